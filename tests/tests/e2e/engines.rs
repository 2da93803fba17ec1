//! tract and ONNX Runtime (the `ort` crate, library from the PyPI wheel)
//! behind the same `Engine` trait: the same scores on the bundle's golden
//! inputs and on real and phantom images, and the daemon runs the engine it
//! is told to, or says clearly why it cannot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use firstlook_e2e::*;
use serde_json::Value;

/// `bundle try --json` on `engine`: file → result.
fn scores(engine: &str, files: &[PathBuf]) -> BTreeMap<String, Value> {
    let out = run_cmd(
        Command::new(release_bin("firstlook-provision"))
            .env("ORT_DYLIB_PATH", ort_dylib())
            .args(["bundle", "try", "--json", "--engine", engine])
            .arg(demo_bundle())
            .args(files),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "{engine}:\n{out}");
    out.stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["file"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

#[test]
fn tract_and_onnxruntime_agree_within_1e4_and_match_the_bundles_golden_outputs() {
    let dir = scratch("engines");
    let mut files: Vec<PathBuf> = ["RG1_UNCR.dcm", "693_UNCR.dcm", "693_J2KR.dcm"]
        .iter()
        .map(|n| pydicom_test_file(n))
        .collect();
    for (kind, finding, seed) in [
        (Kind::Cr, Some(Finding::Pneumothorax), 104),
        (Kind::Dx, Some(Finding::Effusion), 105),
        (Kind::Cr, None, 103),
        (Kind::Ct, Some(Finding::Hemorrhage), 102),
    ] {
        let mut spec = StudySpec::new(kind, seed).with_count(1);
        if let Some(f) = finding {
            spec = spec.with_finding(f);
        }
        let written = phantom(&spec, &dir.path().join(format!("{seed}")));
        files.push(written[0].path.clone());
    }
    let tract = scores("tract", &files);
    let ort = scores("onnxruntime", &files);
    assert_eq!(tract.len(), files.len());
    let mut worst = 0.0f64;
    for (file, t) in &tract {
        let o = &ort[file];
        assert_eq!(t["engine"], "tract");
        assert_eq!(o["engine"], "onnxruntime");
        for (engine, r) in [("tract", t), ("onnxruntime", o)] {
            let golden = r["golden_max_abs_diff"].as_f64().unwrap();
            assert!(
                golden <= 1e-4,
                "{engine}: golden outputs differ by {golden}"
            );
        }
        for (id, f) in t["findings"].as_object().unwrap() {
            let a = f["logit"].as_f64().unwrap();
            let b = o["findings"][id]["logit"].as_f64().unwrap();
            worst = worst.max((a - b).abs());
            assert!(
                (a - b).abs() <= 1e-4,
                "{file} {id}: tract {a}, onnxruntime {b}"
            );
            assert_eq!(f["positive"], o["findings"][id]["positive"], "{file} {id}");
        }
    }
    println!(
        "tract vs onnxruntime on {} images: largest logit difference {worst:.2e}",
        files.len()
    );
}

#[test]
fn the_daemon_runs_onnxruntime_when_told_and_fails_visibly_without_its_library() {
    let dir = scratch("engines-daemon");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port))
        .triage("engine = \"onnxruntime\"")
        .env("ORT_DYLIB_PATH", ort_dylib().to_str().unwrap());
    let cr = phantom(
        &StudySpec::new(Kind::Cr, 104).with_finding(Finding::Pneumothorax),
        &dir.path().join("cr"),
    );
    for sub in ["with", "without"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    {
        let mut daemon = Daemon::start(&dir.path().join("with"), &cfg);
        let out = storescu(daemon.port, "SCANNER", &[], &[cr[0].path.as_path()]);
        assert!(out.status.success(), "{out}");
        let status = daemon.wait_decided(1, Duration::from_secs(60));
        let t = status.triage.as_ref().unwrap();
        let model = t.model.as_ref().unwrap();
        assert_eq!(
            (model.state.as_str(), model.engine.as_deref()),
            ("ready", Some("onnxruntime")),
            "{}",
            status.summary()
        );
        assert!(t.recent.iter().all(|d| d.model.engine == "onnxruntime"));
        assert_eq!(t.urgent, 1, "{}", status.summary());
    }
    // Told to use onnxruntime without its library: the model fails, visibly,
    // and forwarding goes on.
    let cfg = DaemonConfig {
        env: vec![(
            "ORT_DYLIB_PATH".into(),
            "/nonexistent/libonnxruntime.so".into(),
        )],
        ..cfg
    };
    let mut daemon = Daemon::start(&dir.path().join("without"), &cfg);
    let out = storescu(daemon.port, "SCANNER", &[], &[cr[0].path.as_path()]);
    assert!(out.status.success(), "{out}");
    let status = daemon.wait_decided(1, Duration::from_secs(60));
    let t = status.triage.as_ref().unwrap();
    let model = t.model.as_ref().unwrap();
    assert_eq!(model.state, "failed", "{}", status.summary());
    assert!(
        model
            .error
            .as_deref()
            .unwrap()
            .contains("/nonexistent/libonnxruntime.so"),
        "{model:?}"
    );
    assert_eq!(t.errors, 2, "one per finding: {}", status.summary());
    let status = daemon.wait_settled(1, Duration::from_secs(60));
    assert_eq!(status.destination("pacs").delivered, 1);
    assert!(!pacs.received().is_empty());
}

/// `engine = "tensorrt"` where this build has no TensorRT: firstlookd
/// refuses to start, saying why, rather than judge on another engine or
/// none; `check-config` points at the line.
#[test]
fn tensorrt_named_where_it_cannot_run_refuses_to_start() {
    let dir = scratch("engines-tensorrt");
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .triage("engine = \"tensorrt\"");
    let spool = dir.path().join("spool");
    let text = cfg.to_toml(&spool);
    let path = dir.path().join("firstlook.toml");
    std::fs::write(&path, &text).unwrap();

    let run = run_cmd(
        Command::new(firstlookd_bin())
            .arg("--config")
            .arg(&path)
            .arg("run"),
        Duration::from_secs(30),
    );
    assert!(!run.status.success(), "it started:\n{run}");
    assert!(
        run.stderr.contains("engine = \"tensorrt\"") && run.stderr.contains("no TensorRT backend"),
        "{run}"
    );
    assert!(!port_open(cfg.port), "nothing may listen");

    let check = run_cmd(
        Command::new(firstlookd_bin())
            .arg("check-config")
            .arg(&path),
        Duration::from_secs(30),
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("engine = \"tensorrt\""))
        .unwrap()
        + 1;
    assert_eq!(check.code(), Some(2), "{check}");
    assert!(
        check
            .stderr
            .starts_with(&format!("{}:{line}:", path.display())),
        "{check}"
    );
}
