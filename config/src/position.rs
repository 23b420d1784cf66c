//! Finds where a field is written, from the YAML parser's own positions.
//!
//! Positions are looked up only when an error is reported: the file is parsed again
//! as events (granit-parser, which keeps line and column of every node) and walked to
//! the document and field path wanted. Loading a good file pays nothing for it.
//!
//! Field paths are keys joined with `.` and sequence items as `[i]`, from the
//! document's root: `spec.gslb[0].targets[1].cluster`.

use granit_parser::{Event, Marker, Parser};

use crate::Position;

/// Where the field at `path` of document number `doc` (0-based, counting every
/// document of the stream, empty ones too) is written. For a scalar value this is
/// the value; for a mapping or sequence value, its key (the value starts a line
/// later in block style). `None` when the path does not exist there.
pub fn find(text: &str, doc: usize, path: &str) -> Option<Position> {
    find_as(text, doc, path, Place::Value)
}

/// Which end of a `key: value` entry to point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The value when it is a scalar, else its key (see [`find`]).
    Value,
    /// Always the key, when there is one (for "unknown field" errors).
    Key,
}

/// [`find`], pointing at the key or the value as `place` says.
pub fn find_as(text: &str, doc: usize, path: &str, place: Place) -> Option<Position> {
    let mut walker = Walker {
        stack: Vec::new(),
        place,
    };
    let mut parser = Parser::new_from_str(text);
    let mut docs_seen = 0usize;
    let mut inside = false;
    while let Some(Ok((event, span))) = parser.next_event() {
        match event {
            Event::DocumentStart(..) => {
                inside = docs_seen == doc;
                docs_seen += 1;
                if inside && path.is_empty() {
                    return Some(to_position(span.start));
                }
            }
            Event::DocumentEnd if inside => return None,
            Event::StreamEnd => return None,
            _ if inside => {
                if let Some(found) = walker.step(&event, span.start, path) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

/// Like [`find`], but falls back to the nearest parent of `path` that exists,
/// then to the document's start.
pub fn find_nearest(text: &str, doc: usize, path: &str, place: Place) -> Option<Position> {
    let mut p = path;
    loop {
        if let Some(pos) = find_as(text, doc, p, place) {
            return Some(pos);
        }
        if p.is_empty() {
            return None;
        }
        p = parent(p);
    }
}

/// `a.b[2]` → `a.b` → `a` → ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

fn to_position(m: Marker) -> Position {
    // granit-parser: lines are 1-based, columns 0-based.
    Position {
        line: m.line(),
        column: m.col() + 1,
    }
}

/// One open mapping or sequence.
enum Frame {
    Map {
        path: String,
        /// The key just read, waiting for its value; `None` while a key is expected.
        key: Option<(String, Marker)>,
    },
    Seq {
        path: String,
        next: usize,
    },
    /// A mapping or sequence used as a mapping key: nothing inside it is addressable.
    ComplexKey {
        depth: usize,
    },
}

struct Walker {
    stack: Vec<Frame>,
    place: Place,
}

impl Walker {
    /// Feeds one event; returns the position when the node at `want` is met.
    fn step(&mut self, event: &Event<'_>, at: Marker, want: &str) -> Option<Position> {
        if let Some(Frame::ComplexKey { depth }) = self.stack.last_mut() {
            match event {
                Event::MappingStart(..) | Event::SequenceStart(..) => *depth += 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    *depth -= 1;
                    if *depth == 0 {
                        self.stack.pop();
                        self.key_done("?".into(), at);
                    }
                }
                _ => {}
            }
            return None;
        }
        match event {
            Event::Scalar(value, ..) => self.node(Some(value), at, want),
            Event::Alias(..) => self.node(None, at, want),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
                    self.stack.push(Frame::ComplexKey { depth: 1 });
                    return None;
                }
                let (path, key_at) = self.next_path();
                let found = (path == want).then(|| to_position(key_at.unwrap_or(at)));
                self.stack.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
                found
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
                None
            }
            _ => None,
        }
    }

    /// A scalar or alias node: a key, a mapping value or a sequence item.
    fn node(&mut self, scalar: Option<&str>, at: Marker, want: &str) -> Option<Position> {
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            self.key_done(scalar.unwrap_or("*").to_string(), at);
            return None;
        }
        let (path, key_at) = self.next_path();
        self.value_done();
        let at = match self.place {
            Place::Key => key_at.unwrap_or(at),
            Place::Value => at,
        };
        (path == want).then(|| to_position(at))
    }

    fn key_done(&mut self, key: String, at: Marker) {
        if let Some(Frame::Map { key: k, .. }) = self.stack.last_mut() {
            *k = Some((key, at));
        }
    }

    /// The path of the value that comes next, and where its key is written.
    fn next_path(&self) -> (String, Option<Marker>) {
        match self.stack.last() {
            None => (String::new(), None),
            Some(Frame::Map {
                path,
                key: Some((key, at)),
            }) => {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                (p, Some(*at))
            }
            Some(Frame::Seq { path, next }) => (format!("{path}[{next}]"), None),
            Some(Frame::Map { key: None, .. } | Frame::ComplexKey { .. }) => ("?".into(), None),
        }
    }

    /// The value of the innermost container's current entry is complete.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { next, .. }) => *next += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# leading comment
apiVersion: v
kind: Zone
metadata: {name: z}
spec:
  origin: bad..name
  gslb:
    - name: app
      targets:
        - {cluster: a, addresses: [192.0.2.1]}
        - cluster: B
---
kind: Second
spec: {list: [1, 2, {deep: x}]}
";

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn finds_scalars_at_their_value() {
        assert_eq!(find(TEXT, 0, "kind"), at(3, 7));
        assert_eq!(find(TEXT, 0, "spec.origin"), at(6, 11));
        assert_eq!(find(TEXT, 0, "metadata.name"), at(4, 18));
        assert_eq!(find(TEXT, 0, "spec.gslb[0].targets[1].cluster"), at(11, 20));
        assert_eq!(
            find(TEXT, 0, "spec.gslb[0].targets[0].addresses[0]"),
            at(10, 36)
        );
    }

    #[test]
    fn finds_collections_at_their_key() {
        assert_eq!(find(TEXT, 0, "spec.gslb"), at(7, 3));
        assert_eq!(find(TEXT, 0, "spec"), at(5, 1));
        // A sequence item that is a mapping has no key: its first token.
        assert_eq!(find(TEXT, 0, "spec.gslb[0].targets[0]"), at(10, 11));
    }

    #[test]
    fn second_document_and_flow_style() {
        assert_eq!(find(TEXT, 1, "kind"), at(13, 7));
        assert_eq!(find(TEXT, 1, "spec.list[2].deep"), at(14, 28));
        assert_eq!(find(TEXT, 0, "spec.list"), None);
    }

    #[test]
    fn nearest_existing_parent() {
        assert_eq!(
            find_nearest(TEXT, 0, "spec.gslb[0].nope.deeper", Place::Value),
            at(8, 7)
        );
        assert_eq!(find_as(TEXT, 0, "spec.origin", Place::Key), at(6, 3));
        assert_eq!(find(TEXT, 0, "spec.gslb[0]"), at(8, 7));
        assert_eq!(parent("a.b[2]"), "a.b");
        assert_eq!(parent("a"), "");
    }
}
