//! MediaWiki XML exports (`pages-articles.xml[.bz2]`): one document per
//! article (namespace 0), the page id as id, the title kept, redirects
//! skipped, and the wikitext reduced to the plain text a reader sees.
//!
//! The XML is read by `quick-xml` as a stream (a dump is tens of GB). The
//! reduction ([`plain_text`]) follows what WikiExtractor keeps for
//! retrieval corpora (DPR's and Contriever's Wikipedia): link labels stay,
//! templates, tables, references, files, categories and comments go, as
//! does the formatting (bold, italics, headings' `=`, list markers, HTML
//! tags). It is a reduction, not a renderer: a template's output (an
//! infobox, a date) is dropped rather than expanded.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::BufRead;
use std::path::Path;
use std::rc::Rc;
use std::sync::LazyLock;

use quick_xml::events::Event;
use regex::Regex;

use super::stream::{Broken, Counted, DocSink, Parsed, Position};
use crate::error::Error;

/// The element whose text is being collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Title,
    Ns,
    Id,
    Text,
}

/// One `<page>` as read.
#[derive(Debug, Default)]
struct Page {
    title: String,
    ns: String,
    id: String,
    text: String,
    redirect: bool,
    line: u64,
}

pub(super) fn read<R: BufRead>(
    reader: Counted<R>,
    position: &Rc<Cell<Position>>,
    path: &Path,
    sink: &mut DocSink<'_>,
) -> Result<(), Broken> {
    let mut xml = quick_xml::Reader::from_reader(reader);
    let mut buf = Vec::new();
    let mut root_seen = false;
    let mut page: Option<Page> = None;
    let mut in_revision = false;
    let mut field: Option<Field> = None;
    let bad = |message: String| {
        Broken::Record(Error::BadField {
            at: position.get().at(path),
            message,
        })
    };
    loop {
        buf.clear();
        let event = match xml.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(quick_xml::Error::Io(e)) => {
                return Err(Broken::Io(std::io::Error::new(e.kind(), e.to_string())))
            }
            Err(e) => return Err(bad(format!("malformed XML: {e}"))),
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name();
                let name = name.as_ref();
                if !root_seen {
                    if name != "mediawiki" {
                        return Err(bad(format!(
                            "not a MediaWiki export: the root element is <{}>, not <mediawiki> (read .xml files with format = \"text\" to take them as they are)",
                            name
                        )));
                    }
                    root_seen = true;
                    continue;
                }
                match (name, page.as_mut()) {
                    ("page", None) => {
                        page = Some(Page {
                            line: position.get().line,
                            ..Page::default()
                        })
                    }
                    ("revision", Some(_)) => in_revision = !empty,
                    ("redirect", Some(p)) => p.redirect = true,
                    ("title", Some(_)) if !in_revision && !empty => field = Some(Field::Title),
                    ("ns", Some(_)) if !in_revision && !empty => field = Some(Field::Ns),
                    ("id", Some(p)) if !in_revision && !empty && p.id.is_empty() => {
                        field = Some(Field::Id)
                    }
                    ("text", Some(_)) if in_revision && !empty => field = Some(Field::Text),
                    _ => {}
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "page" => {
                    if let Some(p) = page.take() {
                        if let Some(doc) = article(p) {
                            if !sink.push(Ok(doc)) {
                                return Ok(());
                            }
                        }
                    }
                    in_revision = false;
                    field = None;
                }
                "revision" => in_revision = false,
                _ => field = None,
            },
            Event::Text(t) => {
                if let (Some(f), Some(p)) = (field, page.as_mut()) {
                    target(p, f).push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let (Some(f), Some(p)) = (field, page.as_mut()) {
                    target(p, f).push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let (Some(f), Some(p)) = (field, page.as_mut()) {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => match quick_xml::escape::resolve_xml_entity(&r) {
                            Some(s) => s.to_string(),
                            None => {
                                return Err(bad(format!("unknown XML entity &{};", &*r)));
                            }
                        },
                    };
                    target(p, f).push_str(&resolved);
                }
            }
            Event::Eof => {
                if !root_seen {
                    return Err(bad(
                        "not a MediaWiki export: no XML element in the file".into()
                    ));
                }
                if page.is_some() {
                    return Err(bad(
                        "the file ends inside a <page> (truncated?); the pages before it were read"
                            .into(),
                    ));
                }
                return Ok(());
            }
            _ => {}
        }
    }
}

fn target(page: &mut Page, field: Field) -> &mut String {
    match field {
        Field::Title => &mut page.title,
        Field::Ns => &mut page.ns,
        Field::Id => &mut page.id,
        Field::Text => &mut page.text,
    }
}

/// The document a page gives: articles only (namespace 0, or no namespace
/// element in old exports), no redirects, something left after reduction.
fn article(page: Page) -> Option<Parsed> {
    let ns = page.ns.trim();
    if !(ns.is_empty() || ns == "0") || page.redirect {
        return None;
    }
    if page
        .text
        .trim_start()
        .get(..9)
        .is_some_and(|s| s.eq_ignore_ascii_case("#redirect"))
    {
        return None;
    }
    let text = plain_text(&page.text);
    if text.is_empty() {
        return None;
    }
    let title = page.title.trim().to_string();
    let id = match page.id.trim() {
        "" => title.clone(),
        id => id.to_string(),
    };
    Some(Parsed {
        id,
        title: (!title.is_empty()).then_some(title),
        text,
        line: page.line,
    })
}

static COMMENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)<!--.*?(-->|\z)").unwrap());
/// Elements dropped with their content: references, formulas, galleries,
/// code and other extension tags whose text is not prose.
static DROPPED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?is)<(ref|math|gallery|timeline|score|syntaxhighlight|source|templatedata|graph|mapframe|imagemap|chem|ce)\b[^>]*?(/>|>.*?</\s*(ref|math|gallery|timeline|score|syntaxhighlight|source|templatedata|graph|mapframe|imagemap|chem|ce)\s*>)").unwrap()
});
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"</?[a-zA-Z][a-zA-Z0-9]*\b[^<>]*>").unwrap());
static EXTERNAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[(?:https?:|ftp:)?//[^\s\]]+(?:\s+([^\]]*))?\]").unwrap());
static HEADING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(=+)\s*(.*?)\s*=+\s*$").unwrap());
static MAGIC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"__[A-Z]+__").unwrap());
static ENTITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);").unwrap());

/// Namespaces of links that are not prose: the link (and its caption) goes.
const DROPPED_LINKS: &[&str] = &["file", "image", "category", "media"];

/// Reduces wikitext to the text a reader sees (see the module's doc).
pub fn plain_text(wikitext: &str) -> String {
    let s = COMMENT.replace_all(wikitext, "");
    let s = DROPPED.replace_all(&s, "");
    let s = strip_templates_and_tables(&s);
    let s = links(&s);
    let s = EXTERNAL.replace_all(&s, |c: &regex::Captures<'_>| {
        c.get(1).map_or(String::new(), |m| m.as_str().to_string())
    });
    let s = TAG.replace_all(&s, "");
    let s = s.replace("'''", "").replace("''", "");
    let s = MAGIC.replace_all(&s, "");
    let s = entities(&s);
    let mut out = String::with_capacity(s.len());
    for line in s.lines() {
        let line = line.trim();
        if line.starts_with("----") {
            continue;
        }
        let line: Cow<'_, str> = match HEADING.captures(line) {
            Some(c) => Cow::Owned(c[2].to_string()),
            None => Cow::Borrowed(line.trim_start_matches(['*', '#', ':', ';']).trim_start()),
        };
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line);
    }
    out
}

/// Drops `{{templates}}` and `{| tables |}`, nested in any order.
fn strip_templates_and_tables(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut braces, mut tables) = (0usize, 0usize);
    let mut kept = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        let pair = &bytes[i..i + 2];
        let step = match pair {
            b"{{" => {
                braces += 1;
                Some(true)
            }
            b"}}" if braces > 0 => {
                braces -= 1;
                Some(false)
            }
            b"{|" => {
                tables += 1;
                Some(true)
            }
            b"|}" if tables > 0 => {
                tables -= 1;
                Some(false)
            }
            _ => None,
        };
        match step {
            Some(opens) => {
                if opens && braces + tables == 1 {
                    out.push_str(&s[kept..i]);
                }
                i += 2;
                if braces + tables == 0 {
                    kept = i;
                }
            }
            None => i += 1,
        }
    }
    if braces + tables == 0 {
        out.push_str(&s[kept..]);
    }
    out
}

/// `[[target|label]]` → label, `[[target]]` → target; files, categories
/// and interlanguage links go with their captions (which may hold links).
fn links(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("[[") {
        out.push_str(&rest[..open]);
        let inner_start = open + 2;
        // The matching `]]`, counting nested links.
        let mut depth = 1;
        let mut j = inner_start;
        let b = rest.as_bytes();
        while j + 1 < b.len() && depth > 0 {
            match &b[j..j + 2] {
                b"[[" => {
                    depth += 1;
                    j += 2;
                }
                b"]]" => {
                    depth -= 1;
                    j += 2;
                }
                _ => j += 1,
            }
        }
        if depth > 0 {
            // Unclosed: keep the text, drop the brackets.
            out.push_str(&rest[inner_start..]);
            return out;
        }
        let inner = &rest[inner_start..j - 2];
        out.push_str(&link_text(inner));
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}

fn link_text(inner: &str) -> Cow<'_, str> {
    let (target, label) = match inner.find('|') {
        Some(p) => (&inner[..p], Some(&inner[p + 1..])),
        None => (inner, None),
    };
    let target_trim = target.trim();
    if let Some(colon) = target_trim.find(':') {
        let prefix = target_trim[..colon].trim().to_ascii_lowercase();
        let interlanguage = (2..=3).contains(&prefix.len())
            && prefix.chars().all(|c| c.is_ascii_lowercase())
            && !target_trim.starts_with(':');
        if DROPPED_LINKS.contains(&prefix.as_str()) || interlanguage {
            return Cow::Borrowed("");
        }
    }
    match label {
        Some(l) if !l.trim().is_empty() => Cow::Owned(links(l.rsplit('|').next().unwrap_or(l))),
        _ => Cow::Borrowed(target_trim.trim_start_matches(':')),
    }
}

/// HTML entities of the wikitext (`&nbsp;`, `&ndash;`, `&#160;`) as
/// characters; unknown names stay as written.
fn entities(s: &str) -> Cow<'_, str> {
    ENTITY.replace_all(s, |c: &regex::Captures<'_>| {
        let name = &c[1];
        let ch = if let Some(hex) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
            u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
        } else if let Some(dec) = name.strip_prefix('#') {
            dec.parse().ok().and_then(char::from_u32)
        } else {
            None
        };
        match ch {
            Some('\u{a0}') => " ".to_string(),
            Some(ch) => ch.to_string(),
            None => match quick_xml::escape::resolve_html5_entity(name) {
                Some("\u{a0}") => " ".to_string(),
                Some(t) => t.to_string(),
                None => c[0].to_string(),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_reduces_to_what_a_reader_sees() {
        let wikitext = "{{Infobox person\n| name = Ada {{small|Lovelace}}\n}}\n\
'''Ada Lovelace''' (10 December 1815&nbsp;&ndash; 1852) was an [[England|English]] \
[[mathematician]]s.<ref name=\"a\">Toole, p. 4</ref> She wrote on the \
[[Analytical Engine]].<ref name=\"b\"/>\n\
<!-- hidden comment -->\n\
== Early life ==\n\
* She was born in [[London]].\n\
[[File:Ada.jpg|thumb|A portrait of [[Ada Lovelace|Ada]]]]\n\
{| class=\"wikitable\"\n|-\n| cell || {{flag|UK}}\n|}\n\
See [https://example.org the archive] and [https://example.org/bare].<br/>\n\
[[Category:Mathematicians]]\n[[fr:Ada Lovelace]]\n__NOTOC__";
        let got = plain_text(wikitext);
        assert_eq!(
            got,
            "Ada Lovelace (10 December 1815 \u{2013} 1852) was an English mathematicians. She wrote on the Analytical Engine.\n\
Early life\n\
She was born in London.\n\
See the archive and ."
        );
    }

    #[test]
    fn unclosed_markup_loses_no_text_before_it() {
        assert_eq!(plain_text("before [[dangling link"), "before dangling link");
        assert_eq!(plain_text("before {{never closed"), "before");
        assert_eq!(plain_text("a < b and c > d"), "a < b and c > d");
    }
}
