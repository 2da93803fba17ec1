//! Peers acting as PACS: DCMTK `storescp`, the pynetdicom `pacs_scp.py`,
//! and Orthanc.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::dicom::DicomFile;
use crate::paths::free_port;
use crate::process::{python, run_cmd, tail, tool, Proc};
use crate::tls::Pki;
use crate::wait::{port_open, wait_until};
use crate::{ECHOSCU, ORTHANC, STORESCP};

/// DCMTK `storescp` as a PACS: accepts every transfer syntax (`+xa`),
/// promiscuous (`-pm`), writes data sets bit-preserved (`+B`) under unique
/// file names (`+uf`) so duplicates are visible.
pub struct StoreScp {
    pub port: u16,
    pub ae_title: String,
    pub out_dir: PathBuf,
    proc: Proc,
}

impl StoreScp {
    pub fn start(dir: &Path, port: u16, extra_args: &[&str]) -> StoreScp {
        Self::start_with(dir, port, extra_args, &[])
    }

    /// `storescp +tls`: presents `server`'s certificate and requires the
    /// peer's, signed by `clients`' CA.
    pub fn start_tls(dir: &Path, port: u16, server: &Pki, clients: &Pki) -> StoreScp {
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
        let tls = |key: &Path, cert: &Path, ca: &Path| {
            vec![
                "+tls".to_string(),
                path(key),
                path(cert),
                "+cf".into(),
                path(ca),
            ]
        };
        let scp = tls(&server.server_key, &server.server_cert, &clients.ca_cert);
        let echo = tls(&clients.server_key, &clients.server_cert, &server.ca_cert);
        let scp: Vec<&str> = scp.iter().map(String::as_str).collect();
        let echo: Vec<&str> = echo.iter().map(String::as_str).collect();
        Self::start_with(dir, port, &scp, &echo)
    }

    /// `extra_args` go to storescp; `echo_args` to the echoscu that waits for it.
    fn start_with(dir: &Path, port: u16, extra_args: &[&str], echo_args: &[&str]) -> StoreScp {
        let out_dir = dir.join("storescp-received");
        std::fs::create_dir_all(&out_dir).expect("mkdir");
        let mut cmd = tool(STORESCP);
        cmd.args(["--aetitle", "PACS", "+xa", "-pm", "+B", "+uf", "-od"])
            .arg(&out_dir)
            .args(extra_args)
            .arg(port.to_string());
        let mut proc = Proc::spawn("storescp", &mut cmd, &dir.join("storescp.log"));
        wait_until(
            Duration::from_secs(20),
            "storescp to answer C-ECHO",
            |last| {
                proc.assert_running();
                let out = run_cmd(
                    tool(ECHOSCU).args(echo_args).args([
                        "-aec",
                        "PACS",
                        "127.0.0.1",
                        &port.to_string(),
                    ]),
                    Duration::from_secs(10),
                );
                *last = out.to_string();
                out.status.success().then_some(())
            },
        );
        StoreScp {
            port,
            ae_title: "PACS".into(),
            out_dir,
            proc,
        }
    }

    /// Every file written so far.
    pub fn received(&mut self) -> Vec<DicomFile> {
        self.proc.assert_running();
        DicomFile::read_dir(&self.out_dir)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// `tests/py/pacs_scp.py`: a pynetdicom PACS that refuses chosen instances,
/// or aborts the association on them.
pub struct PyPacs {
    pub port: u16,
    pub ae_title: String,
    pub out_dir: PathBuf,
    proc: Proc,
}

impl PyPacs {
    /// `refuse`: (SOP Instance UID, status) pairs answered with that status.
    pub fn start(dir: &Path, port: u16, refuse: &[(&str, u16)]) -> PyPacs {
        let args: Vec<String> = refuse
            .iter()
            .flat_map(|(uid, status)| ["--refuse".to_string(), format!("{uid}={status:04X}")])
            .collect();
        Self::start_args(dir, port, &args)
    }

    /// A PACS that aborts the association (A-ABORT, no response) whenever
    /// one of the `abort_on` SOP Instance UIDs is sent, and stores the rest.
    pub fn start_aborting_on(dir: &Path, port: u16, abort_on: &[&str]) -> PyPacs {
        let args: Vec<String> = abort_on
            .iter()
            .flat_map(|uid| ["--abort-on".to_string(), uid.to_string()])
            .collect();
        Self::start_args(dir, port, &args)
    }

    /// With `pacs_scp.py`'s own options (`--warn UID=B000`, `--delay S`, ...).
    pub fn start_args(dir: &Path, port: u16, args: &[String]) -> PyPacs {
        let out_dir = dir.join("pypacs-received");
        std::fs::create_dir_all(&out_dir).expect("mkdir");
        let mut cmd = python("pacs_scp.py");
        cmd.arg(port.to_string())
            .arg("PACS")
            .arg(&out_dir)
            .args(args);
        let mut proc = Proc::spawn("pacs_scp.py", &mut cmd, &dir.join("pypacs.log"));
        wait_until(Duration::from_secs(30), "pacs_scp.py to listen", |last| {
            proc.assert_running();
            *last = tail(&proc.log, 5);
            (proc.log_text().contains("ready") && port_open(port)).then_some(())
        });
        PyPacs {
            port,
            ae_title: "PACS".into(),
            out_dir,
            proc,
        }
    }

    pub fn received(&mut self) -> Vec<DicomFile> {
        self.proc.assert_running();
        DicomFile::read_dir(&self.out_dir)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// Orthanc as a PACS, with its own storage and a REST API on loopback.
pub struct Orthanc {
    pub dicom_port: u16,
    pub http_port: u16,
    pub ae_title: String,
    proc: Proc,
}

impl Orthanc {
    pub fn start(dir: &Path) -> Orthanc {
        let dicom_port = free_port();
        let http_port = free_port();
        let storage = dir.join("orthanc-storage");
        std::fs::create_dir_all(&storage).expect("mkdir");
        let config = serde_json::json!({
            "Name": "firstlook-e2e",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "DicomAet": "ORTHANC",
            "DicomPort": dicom_port,
            "HttpPort": http_port,
            "HttpServerEnabled": true,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomCheckCalledAet": false,
            "DicomAlwaysAllowStore": true,
            "DicomAlwaysAllowEcho": true,
            "DicomCheckModalityHost": false,
            "StorageCompression": false,
            "Plugins": [],
            "ConcurrentJobs": 1,
            "DicomScpTimeout": 60,
        });
        let config_path = dir.join("orthanc.json");
        std::fs::write(
            &config_path,
            serde_json::to_string_pretty(&config).expect("json"),
        )
        .expect("write orthanc.json");
        let mut cmd = tool(ORTHANC);
        cmd.arg(&config_path);
        let mut proc = Proc::spawn("Orthanc", &mut cmd, &dir.join("orthanc.log"));
        let url = format!("http://127.0.0.1:{http_port}/system");
        wait_until(Duration::from_secs(30), "Orthanc's REST API", |last| {
            proc.assert_running();
            let out = run_cmd(
                Command::new("curl").args(["-s", "-f", &url]),
                Duration::from_secs(10),
            );
            *last = out.to_string();
            (out.status.success() && port_open(dicom_port)).then_some(())
        });
        Orthanc {
            dicom_port,
            http_port,
            ae_title: "ORTHANC".into(),
            proc,
        }
    }

    /// GET a REST path, parsed as JSON.
    pub fn get(&mut self, path: &str) -> serde_json::Value {
        self.proc.assert_running();
        let url = format!("http://127.0.0.1:{}{path}", self.http_port);
        let out = run_cmd(
            Command::new("curl").args(["-s", "-f", &url]),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "GET {url} failed:\n{out}");
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {}", out.stdout))
    }

    /// SOP Instance UIDs of every stored instance.
    pub fn sop_instance_uids(&mut self) -> Vec<String> {
        let v = self.get("/instances?expand");
        v.as_array()
            .unwrap_or_else(|| panic!("/instances?expand is not an array: {v}"))
            .iter()
            .map(|i| {
                i["MainDicomTags"]["SOPInstanceUID"]
                    .as_str()
                    .unwrap_or_else(|| panic!("instance without SOPInstanceUID: {i}"))
                    .to_string()
            })
            .collect()
    }
}
