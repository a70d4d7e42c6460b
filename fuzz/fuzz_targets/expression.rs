//! The mapping expression compiler and the date-format compiler. An error's
//! span must lie on character boundaries inside the text: the loader
//! underlines it with a caret.
#![no_main]
use libfuzzer_sys::fuzz_target;

struct Scope;
impl hubsync::map::expr::Scope for Scope {
    fn column(&self, name: &str) -> Option<usize> {
        ["a", "b", "status_code", "date"].iter().position(|c| *c == name)
    }
    fn column_names(&self) -> Vec<String> {
        vec!["a".into(), "b".into(), "status_code".into(), "date".into()]
    }
    fn value_map(&self, name: &str) -> Option<usize> {
        (name == "m").then_some(0)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = hubsync::map::expr::compile(text, &Scope) {
        assert!(
            e.span.start <= e.span.end
                && e.span.end <= text.len()
                && text.is_char_boundary(e.span.start)
                && text.is_char_boundary(e.span.end),
            "error span {:?} outside the {}-byte expression",
            e.span,
            text.len()
        );
    }
    let _ = hubsync::map::expr::DateFormat::compile(text, false);
});
