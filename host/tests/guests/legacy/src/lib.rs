//! A filter built against `stanzahook:filter@0.1.0`, the first released WIT (kept in `wit/` here
//! as it was), with plain wit-bindgen: hosts of later 0.1 versions must serve it as before. It
//! answers "legacy" itself.
wit_bindgen::generate!({ world: "filter", path: "wit" });

struct Legacy;

impl Guest for Legacy {
    fn before(_event: String) -> Result<BeforeVerdict, String> {
        Ok(BeforeVerdict::Answer(r#"{"body": "legacy"}"#.into()))
    }

    fn after(_event: String, _answer: WebhookAnswer) -> Result<AfterVerdict, String> {
        Ok(AfterVerdict::Pass)
    }
}

export!(Legacy);
