//! `firstlook-provision`, run as the field engineer would, in one test binary.

mod bundle;
mod password;
