//! Locked, zeroized, non-dumpable memory for key material, and the process
//! hardening that goes with it. This is the one module allowed `unsafe`.
//!
//! Invariants:
//! - every key of the hierarchy (unseal key, root key, KEKs, DEKs) lives in a
//!   [`KeyBytes`], whose 32 bytes sit in a page of their own allocated by
//!   `memsec::malloc`: guard pages on both sides, `mlock`ed (never swapped),
//!   `MADV_DONTDUMP` (never in a core dump), zeroized when dropped;
//! - [`KeyBytes`] has no `Clone`, `Display` or `Serialize`, and its `Debug`
//!   prints no byte, so a key cannot leak through formatting or logging;
//! - [`harden_process`] runs before any key exists: core dumps off
//!   (`RLIMIT_CORE` 0) and the process non-dumpable (`PR_SET_DUMPABLE` 0, which
//!   also refuses ptrace attach by unprivileged users).
//!
//! If memory cannot be locked the server refuses to start, unless the
//! operator set `disable_mlock = true`; then keys still get guard pages and
//! zeroization, and the server warns loudly.
#![allow(unsafe_code)]

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroize;

/// Length of every symmetric key in the hierarchy (AES-256).
pub const KEY_LEN: usize = 32;

/// Set once by [`harden_process`]: whether a failed `mlock` is tolerated.
static MLOCK_OPTIONAL: AtomicBool = AtomicBool::new(false);

/// Why key memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// `mlock` failed and the configuration requires locked memory.
    #[error(
        "cannot lock key memory (mlock failed: {0}); raise the memlock limit \
         (systemd: LimitMEMLOCK=infinity, shell: ulimit -l), or set \
         disable_mlock = true in the config to run without it (keys may then be swapped to disk)"
    )]
    MlockFailed(std::io::Error),
    /// The allocator refused a guarded page.
    #[error("cannot allocate guarded key memory")]
    AllocFailed,
    /// A hardening syscall failed.
    #[error("process hardening failed: {what}: {source}")]
    Hardening {
        /// which step failed
        what: &'static str,
        /// the OS error
        source: std::io::Error,
    },
}

/// What [`harden_process`] found, for the start-up log line.
#[derive(Debug, Clone, Copy)]
pub struct Hardening {
    /// Whether key pages can be locked in RAM.
    pub mlock: bool,
}

/// Disable core dumps and ptrace attach, and check that key pages can be
/// locked. Call once at start, before any key is created.
pub fn harden_process(disable_mlock: bool) -> Result<Hardening, MemError> {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid, initialized rlimit struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } != 0 {
        return Err(MemError::Hardening {
            what: "setrlimit(RLIMIT_CORE, 0)",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(MemError::Hardening {
            what: "prctl(PR_SET_DUMPABLE, 0)",
            source: std::io::Error::last_os_error(),
        });
    }
    large_blocks_from_mmap();
    MLOCK_OPTIONAL.store(disable_mlock, Ordering::SeqCst);
    // Probe: one key allocation tells whether locking works here.
    let (_probe, locked) = KeyBytes::allocate()?;
    match (locked, disable_mlock) {
        (true, _) => Ok(Hardening { mlock: true }),
        (false, true) => Ok(Hardening { mlock: false }),
        (false, false) => Err(MemError::MlockFailed(std::io::Error::last_os_error())),
    }
}

/// Blocks of 1 MiB and more (password hashing: 19 MiB each) straight from
/// mmap and back to the kernel when freed. glibc's default raises this
/// threshold as large blocks are freed and then keeps them in its heaps,
/// where they fragment: RSS grew by about a block per hash.
#[cfg(target_env = "gnu")]
fn large_blocks_from_mmap() {
    // SAFETY: mallopt takes two integers and changes allocator tuning only.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) } != 1 {
        tracing::warn!("mallopt(M_MMAP_THRESHOLD) failed; password hashing may keep freed memory resident");
    }
}

#[cfg(not(target_env = "gnu"))]
fn large_blocks_from_mmap() {}

/// 32 bytes of key material in a guarded, locked, non-dumpable page.
///
/// Dropping it zeroizes the bytes before the page is released.
pub struct KeyBytes {
    ptr: NonNull<[u8; KEY_LEN]>,
}

// SAFETY: KeyBytes owns its allocation exclusively (no aliasing pointer is
// handed out except through &self / &mut self borrows), like a Box.
unsafe impl Send for KeyBytes {}
// SAFETY: shared access only reads the bytes; mutation needs &mut self.
unsafe impl Sync for KeyBytes {}

impl KeyBytes {
    /// A zeroed key page; fill it with [`KeyBytes::expose_mut`]. Fails if the
    /// page cannot be locked, unless `disable_mlock` was configured.
    pub fn zeroed() -> Result<Self, MemError> {
        let (key, locked) = Self::allocate()?;
        if !locked && !MLOCK_OPTIONAL.load(Ordering::SeqCst) {
            return Err(MemError::MlockFailed(std::io::Error::last_os_error()));
        }
        Ok(key)
    }

    /// A zeroed key page and whether it is locked in RAM.
    fn allocate() -> Result<(Self, bool), MemError> {
        // SAFETY: memsec::malloc returns a fresh, properly aligned allocation
        // of size_of::<[u8; 32]>() bytes (or None); we zero it before use.
        let ptr = unsafe { memsec::malloc::<[u8; KEY_LEN]>() }.ok_or(MemError::AllocFailed)?;
        let mut key = KeyBytes { ptr };
        key.expose_mut().zeroize();
        // memsec::malloc locks the page but ignores a failure; lock again
        // (idempotent) to learn the outcome. It also sets MADV_DONTDUMP.
        // SAFETY: the pointer covers KEY_LEN bytes of our own allocation.
        let locked = unsafe { memsec::mlock(key.ptr.as_ptr().cast::<u8>(), KEY_LEN) };
        Ok((key, locked))
    }

    /// Fresh random key bytes from the OS.
    pub fn random() -> Result<Self, MemError> {
        let mut key = Self::zeroed()?;
        getrandom::fill(key.expose_mut()).map_err(|_| MemError::AllocFailed)?;
        Ok(key)
    }

    /// Copy `bytes` into a locked page. The caller wipes its own copy.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != KEY_LEN {
            return None;
        }
        let mut key = Self::zeroed().ok()?;
        key.expose_mut().copy_from_slice(bytes);
        Some(key)
    }

    /// The key bytes. Keep the borrow short; never copy them out.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        // SAFETY: ptr is valid for the lifetime of self and initialized.
        unsafe { self.ptr.as_ref() }
    }

    /// Mutable access, to fill a fresh key in place.
    pub fn expose_mut(&mut self) -> &mut [u8; KEY_LEN] {
        // SAFETY: ptr is valid, initialized, and &mut self guarantees uniqueness.
        unsafe { self.ptr.as_mut() }
    }
}

impl Drop for KeyBytes {
    #[inline(never)]
    fn drop(&mut self) {
        self.expose_mut().zeroize();
        // SAFETY: ptr came from memsec::malloc and is freed exactly once;
        // memsec::free also munlocks (which zeroes the page again).
        unsafe { memsec::free(self.ptr) }
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyBytes").finish_non_exhaustive()
    }
}

thread_local! {
    /// One locked key page per thread for short-lived keys (DEKs), so that
    /// the hot path does not pay the ~8 syscalls of a guarded allocation per
    /// secret. Always zeroized after use.
    static SCRATCH: std::cell::RefCell<Option<KeyBytes>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with this thread's scratch key page (zeroed on entry and wiped on
/// exit). Falls back to a fresh page if the scratch is busy (re-entrance).
pub fn with_scratch_key<R>(f: impl FnOnce(&mut KeyBytes) -> R) -> Result<R, MemError> {
    SCRATCH.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return KeyBytes::zeroed().map(|mut k| f(&mut k));
        };
        if slot.is_none() {
            *slot = Some(KeyBytes::zeroed()?);
        }
        let Some(key) = slot.as_mut() else {
            return Err(MemError::AllocFailed);
        };
        let out = f(key);
        key.expose_mut().zeroize();
        Ok(out)
    })
}

/// Overwrite a stretch of the current thread's stack, so that key schedules
/// and temporaries left by a crypto call below this frame do not linger.
/// Called after every operation that used the unseal or root key.
#[inline(never)]
pub fn scrub_stack() {
    let mut buf = [0xA5u8; 32 * 1024];
    buf.zeroize();
    std::hint::black_box(&buf);
}

/// Send signal `signal` to process `pid` (`kill(2)`): `coffer run` forwards
/// SIGINT, SIGTERM, SIGHUP and SIGQUIT to its child, and std offers only
/// SIGKILL. It lives here because this is the one module allowed `unsafe`;
/// it touches no key memory.
pub fn send_signal(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    if pid <= 0 {
        // 0 and negative pids address process groups: never meant here.
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_round_trip_and_debug_hides_bytes() {
        let bytes = [0x42u8; KEY_LEN];
        let key = KeyBytes::from_slice(&bytes).expect("locked key");
        assert_eq!(key.expose(), &bytes);
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("42") && !dbg.contains("66"), "{dbg}");
        assert!(KeyBytes::from_slice(&bytes[..31]).is_none());
    }

    #[test]
    fn scratch_key_is_wiped_after_use() {
        let first = with_scratch_key(|k| {
            assert_eq!(k.expose(), &[0u8; KEY_LEN], "scratch starts zeroed");
            k.expose_mut().fill(7);
            k.expose().as_ptr() as usize
        })
        .expect("scratch");
        let again = with_scratch_key(|k| {
            assert_eq!(k.expose(), &[0u8; KEY_LEN], "previous use was wiped");
            k.expose().as_ptr() as usize
        })
        .expect("scratch");
        assert_eq!(first, again, "the same locked page is reused on one thread");
        // Re-entrant use gets its own page instead of aliasing.
        with_scratch_key(|outer| {
            outer.expose_mut().fill(1);
            with_scratch_key(|inner| assert_eq!(inner.expose(), &[0u8; KEY_LEN])).expect("inner");
            assert_eq!(outer.expose(), &[1u8; KEY_LEN]);
        })
        .expect("outer");
    }

    #[test]
    fn random_keys_differ() {
        let a = KeyBytes::random().expect("key");
        let b = KeyBytes::random().expect("key");
        assert_ne!(a.expose(), b.expose());
    }
}
