//! The unix-socket listener's file (`--unix-socket`, memcached's `-s`):
//! binding it with the backlog and mode of `--unix-mask`, replacing the
//! file a crashed server left behind but never one a live server uses, and
//! removing it at a clean shutdown.
//!
//! memcached simply unlinks whatever is at the path, so a second server
//! silently steals the socket of the first; here a path that answers a
//! connect is refused instead.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tokio::net::UnixListener;

use super::LISTEN_BACKLOG;

/// The bound socket file; dropping it removes the file if it is still the
/// one this process bound (not one put there since by someone else).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    inode: (u64, u64),
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), "cannot remove the unix socket: {e}");
            }
        }
    }
}

/// Binds `path` with [`LISTEN_BACKLOG`] and permission bits `mode`.
///
/// A socket file nobody answers on (a crash left it) is replaced; one a
/// live process accepts on is refused, as is anything that is not a socket.
/// The mode is set right after bind rather than through the process umask,
/// which other threads (sled's files) share; in between, the file has the
/// umask's mode, whose usual `022` already keeps others from connecting.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<(UnixListener, SocketFile)> {
    clear_stale(path)?;
    let listener = UnixListener::bind(path)?;
    // tokio asks for the kernel's maximum; memcached (and TCP here) use 1024.
    // Calling listen again on a listening socket only changes its backlog.
    // SAFETY: a plain syscall on a descriptor the listener owns.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG as libc::c_int) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting the listen backlog");
    }
    let file = {
        let meta = std::fs::symlink_metadata(path)?;
        SocketFile {
            path: path.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
        }
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:04o}"))?;
    Ok((listener, file))
}

/// Removes a stale socket file at `path`; fails if a server answers there
/// or the path is not a socket.
fn clear_stale(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "another server is listening on {}; stop it or choose another --unix-socket",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale unix socket (no server answers on it)");
            std::fs::remove_file(path).context("removing the stale socket file")
        }
        Err(e) => Err(e).context("checking whether a server still listens on it"),
    }
}
