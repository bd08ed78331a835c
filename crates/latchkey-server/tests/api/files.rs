//! The files latchkey keeps on disk: everything it creates in the data directory is
//! owner-only (the SQLite database with its `-wal` and `-shm` files, the pepper, the
//! master key) and so is the directory when latchkey creates it; a pepper or master key
//! others could change stops the start.

use crate::both_backends_with;
use crate::helpers::{TestApp, captured_logs};
use latchkey_server::{Application, Config};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The data directory does not exist yet: latchkey creates it.
fn in_a_new_directory(config: &mut Config) {
    config.data_dir = config.data_dir.join("fresh");
}

both_backends_with!(in_a_new_directory;
    every_file_latchkey_creates_is_owner_only,
);

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn every_file_latchkey_creates_is_owner_only(app: TestApp) {
    // Writes, so that SQLite has its write-ahead log and shared memory open.
    app.create_tenant("acme").await;
    let dir = app.data_dir.path().join("fresh");
    assert_eq!(mode(&dir), 0o700);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected = vec!["master.key", "pepper"];
    if app.database_url.starts_with("sqlite:") {
        expected.extend(["latchkey.db", "latchkey.db-shm", "latchkey.db-wal"]);
        expected.sort();
    }
    assert_eq!(names, expected);
    for name in &names {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
}

/// A server configuration on SQLite in `data_dir`, as the test helper makes one.
fn config(data_dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        database_max_connections: 2,
        ..Config::default()
    }
}

/// Writes a valid key to `path` with `mode`.
fn key_file(path: &Path, mode: u32) -> PathBuf {
    fs::write(path, format!("{}\n", "5a".repeat(32))).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// Why the server refused to start.
async fn refusal(config: Config) -> String {
    match Application::build(config).await {
        Ok(_) => panic!("the server started"),
        Err(error) => format!("{error:#}"),
    }
}

/// A GeoIP database that is missing or not a MaxMind DB stops the start, naming the
/// file (docs/API.md, "Where tokens may be used from").
#[tokio::test]
async fn a_missing_or_corrupt_geoip_database_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("nowhere.mmdb");
    let mut missing_config = config(data.path());
    missing_config.geoip_database_file = Some(missing.clone());
    let refused = refusal(missing_config).await;
    assert!(
        refused.contains(&missing.display().to_string()),
        "{refused}"
    );
    let corrupt = data.path().join("corrupt.mmdb");
    fs::write(&corrupt, b"not a database").unwrap();
    let mut corrupt_config = config(data.path());
    corrupt_config.geoip_database_file = Some(corrupt.clone());
    let refused = refusal(corrupt_config).await;
    assert!(
        refused.contains(&corrupt.display().to_string())
            && refused.contains("not a valid MaxMind DB"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_pepper_or_master_key_others_can_change_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    for (what, file) in [("pepper", "pepper"), ("master key", "master.key")] {
        for (dir, mode) in [
            (data.path(), 0o666),
            (data.path(), 0o620),
            (elsewhere.path(), 0o602),
            (elsewhere.path(), 0o666),
        ] {
            let path = key_file(&dir.join(file), mode);
            let mut config = config(data.path());
            if what == "pepper" {
                config.pepper_file = Some(path.clone());
            } else {
                config.master_key_file = Some(path.clone());
            }
            let error = refusal(config).await;
            let shown = path.display();
            assert!(
                error.contains(&format!(
                    "{what} file {shown} is writable by group or others"
                )),
                "{error}"
            );
            assert!(error.contains(&format!("chmod 600 {shown}")), "{error}");
            fs::remove_file(&path).unwrap();
        }
    }
    // Nothing was created for a server that did not start.
    assert!(!data.path().join("latchkey.db").exists());
}

#[tokio::test]
async fn a_pepper_others_can_read_stops_the_start_only_inside_the_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let inside = key_file(&data.path().join("pepper"), 0o644);
    let error = refusal(config(data.path())).await;
    assert!(
        error.contains(&format!(
            "pepper file {} is readable by others",
            inside.display()
        )),
        "{error}"
    );

    // As Kubernetes and Docker mount secrets by default: a warning, and the server runs.
    fs::set_permissions(&inside, fs::Permissions::from_mode(0o600)).unwrap();
    let mounted = tempfile::tempdir().unwrap();
    let secret = key_file(&mounted.path().join("master.key"), 0o644);
    let mut config = config(data.path());
    config.master_key_file = Some(secret.clone());
    crate::helpers::capture_logs();
    let app = Application::build(config).await.expect("the server starts");
    assert!(app.port() > 0);
    let logs = captured_logs();
    let warning = logs
        .lines()
        .find(|line| line.contains(&secret.display().to_string()))
        .unwrap_or_else(|| panic!("no warning names {}", secret.display()));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("readable by others"), "{warning}");
    assert!(warning.contains("defaultMode: 0400"), "{warning}");
}
