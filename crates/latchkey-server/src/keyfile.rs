//! Server secrets kept in files beside the database, never in it: the pepper that keys
//! secret hashes and the master key that encrypts signing keys. Each is 32 random bytes,
//! hex encoded, created on first start with mode 0600 and refused if shorter.

use anyhow::{Context, bail};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::fs;
use std::io::Write;
use std::path::Path;

const KEY_BYTES: usize = 32;

/// Reads the key at `path`, creating it (mode 0600) if it does not exist.
pub fn load_or_create(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    match fs::read_to_string(path) {
        Ok(text) => decode(text.trim()).with_context(|| format!("{what} file {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(path, what),
        Err(error) => Err(error).with_context(|| format!("reading {what} file {}", path.display())),
    }
}

fn create(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
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

/// Writes `contents` to a new file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
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
        let created = load_or_create(&path, "pepper").unwrap();
        assert_eq!(created.len(), 32);
        assert_eq!(load_or_create(&path, "pepper").unwrap(), created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_short_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pepper");
        fs::write(&path, "abcd").unwrap();
        assert!(load_or_create(&path, "pepper").is_err());
    }
}
