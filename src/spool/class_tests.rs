//! The priority class byte of message frames (format version 5): it rides in the frame, the
//! archived message keeps the layout of versions 1 to 4, and a bad byte ends the walk.

use super::tests::msg;
use super::*;
use crate::spool::model::Recipient;

/// The archived message is the one of versions 1 to 4 (the class is not in it).
#[derive(rkyv::Archive, rkyv::Serialize)]
struct MessageRecordV4 {
    id: u64,
    reverse_path: String,
    mail_params: Vec<(String, Option<String>)>,
    recipients: Vec<Recipient>,
    arrival_unix_ms: u64,
    client_addr: String,
    helo: String,
    tls: Option<String>,
    auth: Option<String>,
    body: Vec<u8>,
}

#[test]
fn the_class_byte_rides_in_the_frame_and_the_archive_is_unchanged() {
    let mut m = msg(9, 2, 50);
    m.priority = crate::priority::Class::code(Some(crate::priority::Class::Bulk));
    let v4 = MessageRecordV4 {
        id: m.id,
        reverse_path: m.reverse_path.clone(),
        mail_params: m.mail_params.clone(),
        recipients: m.recipients.clone(),
        arrival_unix_ms: m.arrival_unix_ms,
        client_addr: m.client_addr.clone(),
        helo: m.helo.clone(),
        tls: m.tls.clone(),
        auth: m.auth.clone(),
        body: m.body.clone(),
    };
    let payload = encode_message(&m).unwrap();
    let old = rkyv::to_bytes::<rancor::Error>(&v4).unwrap();
    assert_eq!(payload.as_slice(), old.as_slice());
    let mut b = encode_header(3, 7).to_vec();
    push_frame_class(&mut b, KIND_MESSAGE, m.priority, &payload).unwrap();
    assert_eq!(decode_message_at(&b, HEADER_LEN as u64).unwrap(), m);
    // A version-4 frame (class byte 0) reads as "no class chosen".
    let mut old = encode_header(3, 7).to_vec();
    push_frame(&mut old, KIND_MESSAGE, &payload).unwrap();
    assert_eq!(
        decode_message_at(&old, HEADER_LEN as u64).unwrap().priority,
        0
    );
    // A class byte no build writes, or on another kind, ends the walk.
    let mut bad = encode_header(3, 7).to_vec();
    assert!(
        push_frame_class(
            &mut bad,
            KIND_MESSAGE,
            crate::priority::MAX_CODE + 1,
            &payload
        )
        .is_err()
    );
    assert!(push_frame_class(&mut bad, KIND_STATE, 1, &payload).is_err());
    let at = bad.len();
    push_frame_class(&mut bad, KIND_MESSAGE, 1, &payload).unwrap();
    bad[at + 9] = crate::priority::MAX_CODE + 1;
    let mut it = RecordIter::new(&bad);
    assert_eq!(it.next(), None);
    assert_eq!(it.stop(), Some(Stop::Invalid("bad class byte")));
}
