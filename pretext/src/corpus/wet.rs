//! Common Crawl WET files: WARC records whose `conversion` records hold a
//! page's plain text. One document per conversion record, its
//! WARC-Record-ID as id (unique by the standard; the URL is not, across
//! crawls). Parsing is the `warc` crate's; this module only picks records.
//!
//! A record with no text (pages whose conversion found none are common in
//! WET files) is no document and no error. A record whose headers do not
//! parse ends the file (the reader cannot find the next record after it).

use std::cell::Cell;
use std::io::BufRead;
use std::path::Path;
use std::rc::Rc;

use warc::{RecordType, WarcReader};

use super::stream::{Broken, Counted, DocSink, Parsed, Position};
use crate::error::Error;

pub(super) fn read<R: BufRead>(
    reader: Counted<R>,
    position: &Rc<Cell<Position>>,
    path: &Path,
    sink: &mut DocSink<'_>,
) -> Result<(), Broken> {
    let mut records = WarcReader::new(reader).iter_records();
    let mut index = 0u64;
    loop {
        let at = position.get();
        let Some(item) = records.next() else {
            return Ok(());
        };
        index += 1;
        let place = || at.at(path);
        let record = match item {
            Ok(r) => r,
            Err(warc::Error::ReadData(e)) => return Err(Broken::Io(e)),
            Err(e) => {
                return Err(Broken::Record(Error::BadField {
                    at: place(),
                    message: format!(
                        "WARC record {index} of the file does not parse ({e}); the records before it were read"
                    ),
                }))
            }
        };
        if *record.warc_type() != RecordType::Conversion {
            continue;
        }
        let text = match std::str::from_utf8(record.body()) {
            Ok(t) => t.trim(),
            Err(e) => {
                let bad = Error::BadField {
                    at: place(),
                    message: format!(
                        "invalid UTF-8 at byte {} of the text of WARC record {index}",
                        e.valid_up_to()
                    ),
                };
                if !sink.push(Err(bad)) {
                    return Ok(());
                }
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let id = record.warc_id();
        let id = id.strip_prefix('<').unwrap_or(id);
        let id = id.strip_suffix('>').unwrap_or(id);
        let doc = Parsed {
            id: id.to_string(),
            title: None,
            text: text.to_string(),
            line: at.line,
        };
        if !sink.push(Ok(doc)) {
            return Ok(());
        }
    }
}
