//! The systemd unit that completes the healing chain.

use std::process::Command;

#[test]
fn the_systemd_unit_verifies_cleanly() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/lakehouse.service"
    ))
    .unwrap();
    for required in [
        "Restart=on-failure",
        "StartLimitBurst=",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/lakehouse",
        "LimitNOFILE=",
        "LoadCredential=tokens:/etc/lakehouse/tokens.toml",
    ] {
        assert!(unit.contains(required), "the unit sets {required}");
    }
    // systemd-analyze checks that ExecStart exists: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lakehouse.service");
    let unit = unit.replace("/usr/local/bin/lakehouse", env!("CARGO_BIN_EXE_lakehouse"));
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (Debian package systemd; ./run installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // It exits 0 on unknown keys and bad values too, with a warning.
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
}
