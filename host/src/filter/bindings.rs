//! The one `bindgen!` of the filter WIT (`wit/filter.wit`), and the host imports it asks for.

wasmtime::component::bindgen!({
    world: "filter",
    path: "../wit",
});

pub use stanzahook::filter::host::Level;

use super::call::CallState;

impl stanzahook::filter::host::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        self.log_line(level, message);
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.settings.config.get(&key).cloned()
    }

    fn config_entries(&mut self) -> Vec<(String, String)> {
        self.settings.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl stanzahook::filter::types::Host for CallState {}
