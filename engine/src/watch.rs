//! How the engine notices that a file it serves from changed (a plugin, the TLS pair, a JWKS
//! file): by comparing the file's [`Stamp`] now and then.
//!
//! Polling, not filesystem events (`notify`), on purpose: Kubernetes mounts a Secret or a
//! ConfigMap as a symlink it swaps atomically (`..data`), which an inotify watch on the file
//! never reports; network filesystems report nothing at all; and one `stat` per file and
//! second costs nothing. A change is seen within the caller's interval.

use std::path::Path;
use std::time::SystemTime;

/// What tells one version of a file from the next without reading it: modification time,
/// length and (on Unix) inode, which an atomic rename changes even within one tick of a
/// coarse clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The [`Stamp`] of `path` (following symlinks), or `None` when it cannot be read.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_or_replaced_file_has_another_stamp() {
        let dir = std::env::temp_dir().join(format!("ordo-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("f");
        std::fs::write(&path, "one").expect("write");
        let first = stamp(&path).expect("stamp");
        assert_eq!(stamp(&path), Some(first), "unchanged");
        std::fs::write(&path, "three").expect("write");
        assert_ne!(stamp(&path), Some(first), "rewritten");
        let before = stamp(&path);
        let next = dir.join("g");
        std::fs::write(&next, "three").expect("write");
        std::fs::rename(&next, &path).expect("rename");
        assert_ne!(stamp(&path), before, "replaced by a rename, same length");
        assert_eq!(stamp(&dir.join("missing")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
