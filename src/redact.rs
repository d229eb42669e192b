//! What the service never shows: the host's paths, and log lines a client
//! could forge.
//!
//! - **Host paths.** The data directory is registered once at start-up
//!   ([`hide`]), in every form it may be printed in (as configured,
//!   absolute, canonical). [`relative`] rewrites any text that names a
//!   file under it to the file's path relative to it (`datasets/x.lance`),
//!   and the directory itself to `<data dir>`. Error messages, `EXPLAIN`
//!   plans and every log line pass through it.
//! - **Forged log lines.** A client's text that reaches a log field (a
//!   decoded object key, a dataset name, a query) may hold a newline; the
//!   log writer ([`Redacting`]) escapes every line break inside an event,
//!   so one request is always one line.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::sync::RwLock;

use tracing_subscriber::fmt::MakeWriter;

static HIDDEN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers `dir` (a data directory) as a path no answer or log line may
/// show. Several applications in one process (the tests) each add theirs.
pub fn hide(dir: &Path) {
    let mut forms = vec![dir.display().to_string()];
    if let Ok(absolute) = std::path::absolute(dir) {
        forms.push(absolute.display().to_string());
    }
    if let Ok(canonical) = dir.canonicalize() {
        forms.push(canonical.display().to_string());
    }
    let Ok(mut hidden) = HIDDEN.write() else {
        return;
    };
    for form in forms {
        let form = form.trim_end_matches('/').to_string();
        // `.` or `/` would hide everything and say nothing.
        if form.len() > 1 && form != "." && !hidden.contains(&form) {
            hidden.push(form);
        }
    }
    // Longest first: a canonical path may extend a shorter configured one.
    hidden.sort_by_key(|f| std::cmp::Reverse(f.len()));
}

/// `text` with every registered directory made relative.
pub fn relative(text: &str) -> Cow<'_, str> {
    let Ok(hidden) = HIDDEN.read() else {
        return Cow::Borrowed(text);
    };
    if !hidden.iter().any(|dir| text.contains(dir.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for dir in hidden.iter() {
        for scheme in ["file-object-store://", "file://"] {
            out = out.replace(&format!("{scheme}{dir}/"), "");
        }
        out = out.replace(&format!("{dir}/"), "");
        out = out.replace(dir.as_str(), "<data dir>");
    }
    Cow::Owned(out)
}

/// A log sink whose every event is one line and names no hidden path.
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

/// One event's writer (tracing-subscriber formats an event, then writes
/// it in one call).
pub struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let text = relative(&text);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        let line = if body.contains(['\n', '\r']) {
            Cow::Owned(body.replace('\r', "\\r").replace('\n', "\\n"))
        } else {
            Cow::Borrowed(body)
        };
        self.0.write_all(line.as_bytes())?;
        self.0.write_all(end.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_directories_become_relative() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data-under-test");
        std::fs::create_dir_all(&data).unwrap();
        hide(&data);
        let shown = data.display().to_string();
        let message = format!("cannot open {shown}/datasets/x.lance: gone; root {shown}");
        assert_eq!(
            relative(&message),
            "cannot open datasets/x.lance: gone; root <data dir>"
        );
        let url = format!("file-object-store://{shown}/vectors/w.lance/_versions");
        assert_eq!(relative(&url), "vectors/w.lance/_versions");
        assert_eq!(relative("nothing to hide"), "nothing to hide");
    }

    #[test]
    fn one_event_is_one_line() {
        let mut out = Vec::new();
        {
            let mut writer = RedactingWriter(&mut out);
            let written = writer
                .write(b"INFO request key=a\nFAKE admin login\r\n")
                .unwrap();
            assert_eq!(written, 37);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "INFO request key=a\\nFAKE admin login\\r\n"
        );
    }
}

/// Replaces filesystem paths in a server-side error message (`/var/lib/…`,
/// `file:///…`) with `<path>`: they say nothing a client can act on and
/// tell an attacker how the host is laid out. The log keeps the original.
/// A path is an absolute one of two or more components at the start of the
/// message or after a space, quote, bracket or `=`; the path of a URL
/// (`http://host/api/x`) is left alone.
pub fn paths(message: &str) -> String {
    static PATH: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let path = PATH.get_or_init(|| {
        regex::Regex::new(
            r#"(^|[\s"'(\[=])((?:file(?:-object-store)?://)?(?:/[A-Za-z0-9._\-]+){2,}/?)"#,
        )
        .ok()
    });
    match path {
        Some(path) => path.replace_all(message, "${1}<path>").into_owned(),
        None => message.to_string(),
    }
}
