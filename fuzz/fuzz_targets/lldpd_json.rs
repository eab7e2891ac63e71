//! Fuzzes the lldpd (`lldpcli -f json0`) output path: the stream framer and the document
//! parser never panic, a framed document is never larger than the cap, and every accepted
//! neighbour has an interface and a chassis id.
#![no_main]

use bmc_pairing_manager::discovery::lldpd::{Change, Framer, MAX_MESSAGE, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Change::Snapshot(n) | Change::Added(n) | Change::Updated(n) | Change::Deleted(n)) =
        parse(data)
    {
        for n in n {
            assert!(!n.interface.is_empty() && !n.chassis_id.is_empty());
        }
    }
    // The same bytes as a watch stream, fed in two reads.
    let (head, tail) = data.split_at(data.len() / 2);
    let mut framer = Framer::new();
    framer.push(head);
    let mut docs = Vec::new();
    while let Ok(Some(doc)) = framer.next_document() {
        docs.push(doc);
    }
    framer.push(tail);
    while let Ok(Some(doc)) = framer.next_document() {
        docs.push(doc);
    }
    for doc in docs {
        assert!(doc.len() <= MAX_MESSAGE);
        let _ = parse(&doc);
    }
});
