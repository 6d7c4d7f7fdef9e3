//! `cursor::decode` of arbitrary text into the position the list endpoints decode (a row id,
//! `Uuid`): never a panic; encode then decode gives the position back.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shopkeep_domain::cursor;
use uuid::Uuid;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// First, so a seed is 16 id bytes followed by cursor text.
    id: [u8; 16],
    text: &'a str,
}

fuzz_target!(|i: Input<'_>| {
    // Whatever a client sends: a position or None. A decoded position encodes to a cursor
    // that decodes to it again.
    if let Some(position) = cursor::decode::<Uuid>(i.text) {
        let again = cursor::encode(&position);
        assert_eq!(cursor::decode::<Uuid>(&again), Some(position));
    }
    let id = Uuid::from_bytes(i.id);
    let c = cursor::encode(&id);
    assert!(
        c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "a cursor is URL-safe: {c}"
    );
    assert_eq!(cursor::decode::<Uuid>(&c), Some(id));
});
