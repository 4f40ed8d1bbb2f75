//! Returns a "rewritten" event that is not JSON, through the raw bindings (the SDK would not let
//! it).
use stanzahook_guest::wit::{self, AfterVerdict, BeforeVerdict, WebhookAnswer};

struct Garbage;

impl wit::Guest for Garbage {
    fn before(_event: String) -> Result<BeforeVerdict, String> {
        Ok(BeforeVerdict::Rewrite("{this is not json".into()))
    }

    fn after(_event: String, _answer: WebhookAnswer) -> Result<AfterVerdict, String> {
        Ok(AfterVerdict::Pass)
    }
}

impl wit::exports::stanzahook::filter::instances::Guest for Garbage {
    fn reuse() -> bool {
        false
    }
}

wit::export!(Garbage with_types_in stanzahook_guest::wit);
