//! Server secrets kept in files beside the database, never in it: the pepper that keys
//! secret hashes and the master key that encrypts signing keys. Each is 32 random bytes,
//! hex encoded, created on first start with mode 0600 and refused if shorter.
//!
//! Whoever can write either file can make the server accept secrets of their choosing or
//! sign with keys they know, so a file writable by group or others stops the start.
//! One readable by others is refused inside the data directory, which latchkey keeps
//! owner-only; outside it (a secret mounted by Kubernetes or Docker, 0644 by default) it
//! only draws a warning (docs/DEPLOYMENT.md, "File permissions").

use anyhow::{Context, bail};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::fs;
use std::io::Write;
use std::path::Path;

const KEY_BYTES: usize = 32;

/// Reads the key at `path`, creating it (mode 0600) if it does not exist, after checking
/// that its mode keeps it private (see the module docs). `data_dir` is the server's data
/// directory.
pub fn load_or_create(path: &Path, what: &str, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    match fs::metadata(path) {
        Ok(metadata) => {
            check_mode(path, what, &metadata, data_dir)?;
            let text = fs::read_to_string(path)
                .with_context(|| format!("reading {what} file {}", path.display()))?;
            decode(text.trim()).with_context(|| format!("{what} file {}", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(path, what),
        Err(error) => Err(error).with_context(|| format!("reading {what} file {}", path.display())),
    }
}

/// Reads the key at `path`, which must exist (a break-glass command or a
/// configuration check must not invent a new pepper or master key).
pub fn load_existing(path: &Path, what: &str, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if !path.exists() {
        anyhow::bail!(
            "{what} file {} does not exist; is this the server's data directory?",
            path.display()
        );
    }
    load_or_create(path, what, data_dir)
}

#[cfg(unix)]
fn check_mode(
    path: &Path,
    what: &str,
    metadata: &fs::Metadata,
    data_dir: &Path,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    let shown = path.display();
    if mode & 0o022 != 0 {
        bail!(
            "{what} file {shown} is writable by group or others (mode {mode:03o}); \
             run `chmod 600 {shown}`"
        );
    }
    if mode & 0o004 != 0 {
        if is_inside(path, data_dir) {
            bail!(
                "{what} file {shown} is readable by others (mode {mode:03o}); \
                 run `chmod 600 {shown}`"
            );
        }
        tracing::warn!(
            "{what} file {shown} is readable by others (mode {mode:03o}); if it is a mounted \
             secret, mount it with `defaultMode: 0400` (Kubernetes) or owner-only, else run \
             `chmod 600 {shown}`"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path, _: &str, _: &fs::Metadata, _: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Whether `path` lies in `dir`, symbolic links resolved (a mounted secret is often a
/// link into a hidden directory beside it).
fn is_inside(path: &Path, dir: &Path) -> bool {
    match (path.canonicalize(), dir.canonicalize()) {
        (Ok(path), Ok(dir)) => path.starts_with(dir),
        _ => path.starts_with(dir),
    }
}

/// Creates `dir` and its missing parents owner-only (0700, whatever the umask); an
/// existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700).create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

fn create(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)
            .with_context(|| format!("creating the directory of {}", path.display()))?;
    }
    let mut key = vec![0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, format!("{hex}\n").as_bytes())
        .with_context(|| format!("creating {what} file {}", path.display()))?;
    Ok(key)
}

/// Writes `contents` to a file readable by its owner only (0600, whatever the umask, and
/// made so before anything is written when the file already existed).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

fn decode(hex: &str) -> anyhow::Result<Vec<u8>> {
    if hex.len() < KEY_BYTES * 2 || hex.len() % 2 != 0 {
        bail!("must hold at least {KEY_BYTES} bytes as hex");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).context("is not hex"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_read_back_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pepper");
        let created = load_or_create(&path, "pepper", dir.path()).unwrap();
        assert_eq!(created.len(), 32);
        assert_eq!(
            load_or_create(&path, "pepper", dir.path()).unwrap(),
            created
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_private_write_over_an_open_file_makes_it_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_short_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pepper");
        fs::write(&path, "abcd").unwrap();
        assert!(load_or_create(&path, "pepper", dir.path()).is_err());
    }

    #[cfg(unix)]
    fn key_with_mode(dir: &Path, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("key-{mode:o}"));
        fs::write(&path, "ab".repeat(32)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_write_is_refused_wherever_it_lies() {
        let data = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        for dir in [data.path(), elsewhere.path()] {
            for mode in [0o620, 0o602, 0o660, 0o666, 0o777, 0o622] {
                let path = key_with_mode(dir, mode);
                let error = load_or_create(&path, "pepper", data.path()).unwrap_err();
                let text = format!("{error:#}");
                assert!(text.contains(&path.display().to_string()), "{text}");
                assert!(text.contains("writable by group or others"), "{text}");
                assert!(
                    text.contains(&format!("chmod 600 {}", path.display())),
                    "{text}"
                );
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused_only_inside_the_data_directory() {
        let data = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        for mode in [0o604, 0o644, 0o444] {
            let inside = key_with_mode(data.path(), mode);
            let error = load_or_create(&inside, "master key", data.path()).unwrap_err();
            assert!(
                format!("{error:#}").contains("readable by others"),
                "{error:#}"
            );
            let outside = key_with_mode(elsewhere.path(), mode);
            assert_eq!(
                load_or_create(&outside, "master key", data.path()).unwrap(),
                vec![0xab; 32]
            );
        }
        // Through a link into the data directory, it is still inside.
        let target = key_with_mode(data.path(), 0o644);
        let link = elsewhere.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(load_or_create(&link, "master key", data.path()).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn owner_only_and_group_readable_keys_are_accepted() {
        let data = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400, 0o640, 0o440] {
            let path = key_with_mode(data.path(), mode);
            assert_eq!(
                load_or_create(&path, "pepper", data.path()).unwrap(),
                vec![0xab; 32]
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn missing_directories_are_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/pepper");
        load_or_create(&path, "pepper", root.path()).unwrap();
        for dir in ["a", "a/b"] {
            let mode = fs::metadata(root.path().join(dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{dir}");
        }
    }
}
