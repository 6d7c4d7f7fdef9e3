//! The order export's cells: any strings, neutralised and written as one CSV record, parse back
//! (by a strict RFC 4180 reader written here, not the writer's own library) to the neutralised
//! values, and none of them starts like a spreadsheet formula.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shopkeep_domain::export;

/// Reads exactly one RFC 4180 record ending in CRLF; `None` for anything else.
fn parse_record(b: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut f = Vec::new();
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match *b.get(i)? {
                    b'"' if b.get(i + 1) == Some(&b'"') => {
                        f.push(b'"');
                        i += 2;
                    }
                    b'"' => {
                        i += 1;
                        break;
                    }
                    c => {
                        f.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&c) = b.get(i) {
                match c {
                    b',' | b'\r' => break,
                    // Bare quotes and line breaks belong inside quotes.
                    b'"' | b'\n' => return None,
                    _ => f.push(c),
                }
                i += 1;
            }
        }
        fields.push(f);
        match *b.get(i)? {
            b',' => i += 1,
            b'\r' => return (&b[i + 1..] == b"\n").then_some(fields),
            _ => return None,
        }
    }
}

fuzz_target!(|cells: Vec<String>| {
    // The export always writes its 16 columns; an empty record is not one it makes.
    if cells.is_empty() {
        return;
    }
    let cells: Vec<String> = cells.into_iter().map(export::neutralise).collect();
    for c in &cells {
        assert!(
            !c.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{c:?} starts a formula"
        );
    }
    let bytes = export::record(&cells);
    let parsed = parse_record(&bytes).unwrap_or_else(|| {
        panic!(
            "not one RFC 4180 record: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let parsed: Vec<String> = parsed
        .into_iter()
        .map(|f| String::from_utf8(f).expect("cells stay UTF-8"))
        .collect();
    assert_eq!(parsed, cells);
});
