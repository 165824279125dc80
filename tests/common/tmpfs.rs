//! A size-limited tmpfs mounted for one test (a disk that fills), for the
//! storage-fault tests. Mounting needs root: `None` (the test skips, with a
//! message) where it is not permitted.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Unmounted on drop (lazily, so a server still holding files open cannot
/// leave it mounted when a test panics), and its mount point removed when
/// empty.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// A tmpfs of `mb` MiB on a fresh directory named after `name`.
    pub fn mount(name: &str, mb: u64) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("mcl-{name}-{}", std::process::id()));
        Tmpfs::mount_at(&dir, mb)
    }

    /// A tmpfs of `mb` MiB over `dir` (created if missing).
    pub fn mount_at(dir: &Path, mb: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "skipping: cannot mount a tmpfs on {} (needs root)",
                dir.display()
            );
            let _ = std::fs::remove_dir(dir);
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Remounts it at `mb` MiB (the filesystem grows).
    pub fn grow(&self, mb: u64) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success(), "remount failed");
    }

    /// Bytes free.
    pub fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Fills it until `left` bytes are free; returns the filler file.
    pub fn fill(&self, left: u64) -> PathBuf {
        let filler = self.0.join("filler");
        let size = self.free().saturating_sub(left);
        // tmpfs allocates pages as they are written, not on set_len.
        let mut w = std::io::BufWriter::new(std::fs::File::create(&filler).unwrap());
        let chunk = vec![7u8; 1 << 20];
        let mut written = 0;
        while written < size {
            let n = chunk.len().min((size - written) as usize);
            w.write_all(&chunk[..n]).unwrap();
            written += n as u64;
        }
        w.flush().unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}
