//! The allocator the binary and benchmarks use. Training allocates and frees
//! tensors of megabytes every step; the system allocator hands such blocks
//! back to the kernel at once, and the next step pays page faults and page
//! zeroing for them again (a quarter of a step's time, measured with perf).
//! mimalloc, told never to return freed memory, reuses it instead.

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, v2
/// header): how long freed memory waits before going back to the OS.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for reuse (call once, first thing in `main`).
pub fn keep_freed_memory() {
    // SAFETY: sets a process-wide allocator option; mimalloc documents
    // mi_option_set as callable at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// The global allocator type for the binary and benchmarks.
pub type Allocator = mimalloc::MiMalloc;
