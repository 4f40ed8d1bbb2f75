//! A WebAssembly component of another world: it builds for wasm32-wasip2 but exports nothing of
//! `stanzahook:filter`, so the host must refuse it as a filter.

/// Something to export, so the component is not empty.
#[unsafe(no_mangle)]
pub extern "C" fn answer() -> u32 {
    42
}
