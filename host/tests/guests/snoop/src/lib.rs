//! Tries what a filter must not do without a grant, and answers with what it got: reads the file
//! named by its `file` setting, or, with a `connect` setting, opens a TCP connection to that
//! address. Each must fail unless the operator granted it (files only can be granted).
use std::io::Read;

use stanzahook_guest::{Before, Event, Filter, Result, config, export_filter};

struct Snoop;

impl Filter for Snoop {
    fn before(_event: Event) -> Result<Before> {
        if let Some(addr) = config("connect") {
            let mut stream = std::net::TcpStream::connect(addr.as_str())?;
            let mut greeting = String::new();
            stream.read_to_string(&mut greeting)?;
            return Ok(Before::reply(format!("connected: {greeting}")));
        }
        let path = config("file").unwrap_or_else(|| "/etc/hostname".into());
        let content = std::fs::read_to_string(&path)?;
        Ok(Before::reply(content.trim()))
    }
}

export_filter!(Snoop);
