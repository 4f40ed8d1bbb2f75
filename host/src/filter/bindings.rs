//! The one `bindgen!` of the filter WIT (`wit/filter.wit`), the host imports it asks for, and the
//! hooks' results as they lie in the guest's memory.
//!
//! A string a guest hands to a host import (a log message, a config key) is read as a `WasmStr`, a
//! view into the guest's memory, so that it is measured before anything is copied (README:
//! "Filters"). A hook's result cannot be: wasmtime runs the guest's post-return function (which
//! frees the result's strings) inside the call, before the host sees the result, so a view read
//! afterwards reads freed memory. Python guests reuse that memory at once; Rust ones happened not
//! to. Results are therefore copied while they are lifted (no larger than the filter's memory
//! limit, as they lie in its memory) and measured right after.

use anyhow::Context;
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, HasSelf, Lift, Linker, WasmStr};

wasmtime::component::bindgen!({
    world: "filter",
    path: "../wit",
});

pub use stanzahook::filter::host::Level;

use super::call::CallState;
use super::guest_text;

/// The host interface, as the WIT names it; guests built against 0.1.0 link to it too (semver).
const HOST_INTERFACE: &str = "stanzahook:filter/host@0.1.1";
/// A config key longer than this cannot name an entry: the lookup reads no further.
const MAX_CONFIG_KEY_BYTES: usize = 4096;

/// `before-verdict`, its strings copied out of the guest's memory as they are lifted.
#[derive(ComponentType, Lift)]
#[component(variant)]
pub enum RawBefore {
    #[component(name = "pass")]
    Pass,
    #[component(name = "rewrite")]
    Rewrite(String),
    #[component(name = "answer")]
    Answer(String),
    #[component(name = "drop")]
    Drop,
}

/// `after-verdict`, its string copied out as it is lifted.
#[derive(ComponentType, Lift)]
#[component(variant)]
pub enum RawAfter {
    #[component(name = "pass")]
    Pass,
    #[component(name = "replace")]
    Replace(String),
    #[component(name = "drop")]
    Drop,
}

/// What a hook returns: `result<verdict, string>`.
pub type HookResult<V> = (Result<V, String>,);

/// Adds the host imports (`host.log`, `host.config`, `host.config-entries`) and the `types`
/// interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    stanzahook::filter::types::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
        .map_err(anyhow::Error::from)
        .context("types")?;
    let mut host = linker.instance(HOST_INTERFACE).map_err(anyhow::Error::from)?;
    host.func_wrap("log", |mut store: StoreContextMut<'_, CallState>, (level, message): (Level, WasmStr)| {
        // Only what the call's log budget can still keep is copied out of the guest's memory.
        let room = store.data().log.room();
        let (part, total) = match message.to_str(&store) {
            Ok(text) => (text[..text.floor_char_boundary(room.min(text.len()))].to_owned(), text.len()),
            Err(e) => {
                let what = format!("(a log message that is not text: {e})");
                let len = what.len();
                (what, len)
            }
        };
        store.data_mut().log.push_part(level, &part, total);
        Ok(())
    })
    .map_err(anyhow::Error::from)
    .context("log")?;
    host.func_wrap("config", |store: StoreContextMut<'_, CallState>, (key,): (WasmStr,)| {
        let value = match guest_text::within_memory(&key, &store, MAX_CONFIG_KEY_BYTES) {
            Ok(key) => store.data().settings.config.get(key.as_ref()).cloned(),
            Err(_) => None,
        };
        Ok((value,))
    })
    .map_err(anyhow::Error::from)
    .context("config")?;
    host.func_wrap("config-entries", |store: StoreContextMut<'_, CallState>, (): ()| {
        let entries: Vec<(String, String)> =
            store.data().settings.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok((entries,))
    })
    .map_err(anyhow::Error::from)
    .context("config-entries")?;
    Ok(())
}

impl stanzahook::filter::types::Host for CallState {}
