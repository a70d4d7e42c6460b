//! Load-time diagnostics: `file:line:col`, the offending source line, a caret
//! under the exact spot, and a hint.
//!
//! Every error found while loading config, connector or mapping files becomes a
//! [`Diagnostic`] that points into the file's text by byte span, so the same
//! renderer serves TOML syntax errors, unknown keys and expression errors.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A source file kept in memory while it is validated, so that spans can be
/// turned into line and column.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn read(path: &Path) -> Result<SourceFile, Diagnostic> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(SourceFile {
                path: path.to_path_buf(),
                text,
            }),
            Err(e) => Err(Diagnostic::file_level(path, format!("cannot read file: {e}"))),
        }
    }

    /// A diagnostic at `span` of this file.
    pub fn diag(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, col, source_line) = locate(&self.text, span.start);
        let width = span
            .end
            .saturating_sub(span.start)
            .clamp(1, source_line.len().saturating_sub(col - 1).max(1));
        Diagnostic {
            path: self.path.clone(),
            line,
            col,
            message: message.into(),
            source_line: Some(source_line.to_string()),
            caret_width: width,
            hint: None,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`, and that line's text.
fn locate(text: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[..offset].matches('\n').count() + 1;
    let col = text[line_start..offset].chars().count() + 1;
    (line, col, text[line_start..line_end].trim_end_matches('\r'))
}

/// One load-time error, pointing at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub source_line: Option<String>,
    pub caret_width: usize,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error about a whole file (it is missing, unreadable, …).
    pub fn file_level(path: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message: message.into(),
            source_line: None,
            caret_width: 1,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "error: {}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some(src) = &self.source_line {
            let gutter = self.line.to_string().len();
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", self.line, src)?;
            // Tabs before the caret must stay tabs, or the caret drifts.
            let pad: String = src
                .chars()
                .take(self.col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{:gutter$} | {}{}", "", pad, "^".repeat(self.caret_width))?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// All diagnostics of one load, so that `hubsync check` reports every mistake
/// at once instead of one per run.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            write!(f, "{d}")?;
        }
        write!(f, "{} error(s)", self.0.len())
    }
}

impl std::error::Error for Diagnostics {}

/// Parses TOML into `T`, turning syntax errors and unknown or mistyped keys
/// into a diagnostic with the span `toml` reports.
pub fn parse_toml<T: serde::de::DeserializeOwned>(src: &SourceFile) -> Result<T, Diagnostic> {
    toml::from_str::<T>(&src.text).map_err(|e| {
        let span = e.span().unwrap_or(0..1);
        let message = e.message().trim().to_string();
        let hint = if message.starts_with("unknown field") {
            Some("check the spelling; config.example.toml and docs/mapping.md list every key")
        } else {
            None
        };
        let d = src.diag(span, message);
        match hint {
            Some(h) => d.with_hint(h),
            None => d,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_col_and_caret() {
        let src = SourceFile {
            path: "m.toml".into(),
            text: "a = 1\nbad = \"x\"\n".into(),
        };
        let d = src.diag(6..9, "unknown key").with_hint("remove it");
        let out = d.to_string();
        assert!(out.starts_with("error: m.toml:2:1: unknown key"), "{out}");
        assert!(out.contains("2 | bad = \"x\""), "{out}");
        assert!(out.contains("  | ^^^"), "{out}");
        assert!(out.contains("hint: remove it"), "{out}");
    }

    #[test]
    fn toml_syntax_error_has_position() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: i64,
        }
        let src = SourceFile {
            path: "c.toml".into(),
            text: "a = 1\nb = = 2\n".into(),
        };
        let d = parse_toml::<T>(&src).expect_err("syntax error must fail");
        assert_eq!(d.line, 2);
    }
}
