//! The process's allocator, mimalloc (set in `main.rs`): what the host asks of it beyond
//! allocating and freeing.

/// A freed block at least this large is worth returning to the system at once.
pub const RETURN_AT_ONCE_BYTES: usize = 8 << 20;

/// Returns the memory freed so far to the system now.
///
/// mimalloc keeps freed memory resident for its purge delay (a second) and purges only on a later
/// allocation, so a block that large stays in the process until the next one of its size. A
/// filter may hand the host a string as large as its memory (up to 1 GiB) that is then refused:
/// without this, each filter thread that refused one kept a copy's worth resident (measured: two
/// 48 MiB answers at once, after one, raised peak memory by 203–243 MiB over idle; with this
/// 168–195 MiB, the two guests' memory and their two copies). It walks the thread's heap,
/// so it is only for frees of that size.
#[allow(unsafe_code)]
pub fn return_freed_memory() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any time; if
    // mimalloc is not the global allocator (a test linking the library) it collects mimalloc's
    // own, empty, heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
