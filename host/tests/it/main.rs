//! stanzahook's integration tests: one binary, a module per area (Wasmtime's layout).
//! The bridge tests run a real Prosody, a real XMPP client and a real HTTP webhook.

mod api;
mod bridge;
mod builtin;
mod cli;
mod connection;
mod deliveries;
mod examples;
mod faults;
mod filters;
mod golden;
mod harness;
mod instances;
mod languages;
mod muc_servers;
mod ordering;
mod outcomes;
mod quickstart;
mod reload;
mod retries;
mod rooms;
mod transport;
mod vocabulary;
