//! A counting global allocator: the heap a fuzz case uses, measured on the
//! thread that runs it, and a hard cap that stops a runaway case before it
//! takes the machine down.
//!
//! A test binary opts in with
//! `#[global_allocator] static A: fuzz::alloc::Counting = fuzz::alloc::Counting;`.
//! Without it, [`Meter`] reads zero and the memory property is not checked
//! (the libFuzzer build leaves it out and relies on `-rss_limit_mb`).
//!
//! Accounting is per thread: a case runs on a thread of its own, so the live
//! bytes of that thread are the case's. Memory allocated on one thread and
//! freed on another skews both, which is why the harness measures the peak
//! relative to the live bytes when the case started.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static CAP: Cell<isize> = const { Cell::new(isize::MAX) };
}

/// Set once a [`Counting`] allocator has served an allocation.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The allocator: [`System`] plus per-thread accounting.
pub struct Counting;

/// Charge `n` bytes to this thread; false when that would pass its cap.
fn charge(n: usize) -> bool {
    let n = n as isize;
    LIVE.try_with(|live| {
        let now = live.get().saturating_add(n);
        if now > CAP.try_with(Cell::get).unwrap_or(isize::MAX) {
            return false;
        }
        live.set(now);
        let _ = PEAK.try_with(|p| {
            if now > p.get() {
                p.set(now);
            }
        });
        true
    })
    .unwrap_or(true)
}

fn credit(n: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n as isize)));
}

// SAFETY: every method forwards to `System` with the caller's layout; the
// bookkeeping touches only const-initialised thread-locals without
// destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        if !charge(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        if !charge(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        credit(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            if !charge(new_size - layout.size()) {
                return std::ptr::null_mut();
            }
        } else {
            credit(layout.size() - new_size);
        }
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() && new_size > layout.size() {
            credit(new_size - layout.size());
        }
        p
    }
}

/// Measures the heap of the current thread from its creation on.
pub struct Meter {
    base: isize,
}

impl Meter {
    /// Start measuring on this thread; refuse (abort the process with
    /// "memory allocation failed") any allocation past `cap` bytes above the
    /// current live bytes.
    pub fn start(cap: usize) -> Meter {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        CAP.with(|c| c.set(base.saturating_add(cap as isize)));
        Meter { base }
    }

    /// The most bytes live at once since [`Meter::start`], above the start.
    pub fn peak(&self) -> usize {
        (PEAK.with(Cell::get) - self.base).max(0) as usize
    }

    /// Whether a counting allocator is installed (else [`Meter::peak`] is 0).
    pub fn installed() -> bool {
        INSTALLED.load(Ordering::Relaxed)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        CAP.with(|c| c.set(isize::MAX));
    }
}
