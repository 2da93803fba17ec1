//! Refused connections from one address are audited one by one up to a
//! limit per window; the rest are counted and audited as one record when
//! the window ends, so a port scan cannot flood the audit trail (or push
//! other records out of its queue) while no refusal goes unaccounted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals recorded one by one per address and window.
pub const LIMIT: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; refusals from further ones are counted
/// together under the unspecified address.
const MAX_PEERS: usize = 1024;
const OTHERS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

struct Window {
    started: Instant,
    recorded: u32,
    suppressed: u32,
}

/// Refusals not recorded one by one: from `peer`, `count` of them, in the
/// window that ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub peer: IpAddr,
    pub count: u32,
}

impl Suppressed {
    pub fn describe(&self) -> String {
        let from = if self.peer == OTHERS {
            "other addresses (too many to track one by one)".to_string()
        } else {
            "this address".to_string()
        };
        format!(
            "{} more refused connections from {from} within {} s were not recorded one by one",
            self.count,
            WINDOW.as_secs()
        )
    }
}

pub struct Refusals {
    limit: u32,
    window: Duration,
    peers: Mutex<HashMap<IpAddr, Window>>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new(LIMIT, WINDOW)
    }
}

impl Refusals {
    pub fn new(limit: u32, window: Duration) -> Refusals {
        Refusals {
            limit,
            window,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a refusal from `peer` is to be recorded on its own; when
    /// not, it is counted towards its window's summary.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> bool {
        let mut peers = self.peers.lock().expect("refusals");
        let key = if peers.contains_key(&peer) || peers.len() < MAX_PEERS {
            peer
        } else {
            OTHERS
        };
        let w = peers.entry(key).or_insert(Window {
            started: now,
            recorded: 0,
            suppressed: 0,
        });
        if key != OTHERS && w.recorded < self.limit {
            w.recorded += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// Forgets the windows ended by `now` (all of them with `None`) and
    /// returns those that suppressed refusals.
    pub fn ended(&self, now: Option<Instant>) -> Vec<Suppressed> {
        let mut peers = self.peers.lock().expect("refusals");
        let mut out = Vec::new();
        peers.retain(|&peer, w| {
            let over = now.is_none_or(|now| now.duration_since(w.started) >= self.window);
            if over && w.suppressed > 0 {
                out.push(Suppressed {
                    peer,
                    count: w.suppressed,
                });
            }
            !over
        });
        out.sort_by_key(|s| s.peer);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn the_first_refusals_are_recorded_the_rest_counted_until_the_window_ends() {
        let r = Refusals::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let admitted: Vec<bool> = (0..8).map(|_| r.admit(ip(1), t0)).collect();
        assert_eq!(
            admitted,
            [true, true, true, false, false, false, false, false]
        );
        assert!(r.admit(ip(2), t0), "another address has its own window");
        assert_eq!(r.ended(Some(t0 + Duration::from_secs(59))), []);
        assert_eq!(
            r.ended(Some(t0 + Duration::from_secs(60))),
            [Suppressed {
                peer: ip(1),
                count: 5
            }]
        );
        assert!(r.admit(ip(1), t0 + Duration::from_secs(61)), "a new window");
        assert_eq!(r.ended(Some(t0 + Duration::from_secs(200))), []);
    }

    #[test]
    fn at_the_end_every_count_is_given_and_addresses_beyond_the_bound_share_one() {
        let r = Refusals::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for n in 0..MAX_PEERS + 5 {
            let peer = IpAddr::V6(std::net::Ipv6Addr::from(n as u128 + 1));
            assert_eq!(r.admit(peer, t0), n < MAX_PEERS, "{n}");
        }
        assert!(!r.admit(ip(9), t0));
        assert!(r.peers.lock().unwrap().len() <= MAX_PEERS + 1);
        let all = r.ended(None);
        assert_eq!(
            all,
            [Suppressed {
                peer: OTHERS,
                count: 6
            }]
        );
        assert!(all[0]
            .describe()
            .contains("6 more refused connections from other addresses"));
        assert!(r.peers.lock().unwrap().is_empty());
    }
}
