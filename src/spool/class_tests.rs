//! The priority class byte of message frames (format version 5): it rides in the frame, not in
//! the archived message, and a bad byte ends the walk.

use super::tests::msg;
use super::*;

#[test]
fn the_class_byte_rides_in_the_frame_and_the_archive_is_unchanged() {
    let mut m = msg(9, 2, 50);
    m.priority = crate::priority::Class::code(Some(crate::priority::Class::Bulk));
    let payload = encode_message(&m).unwrap();
    let unclassed = MessageRecord {
        priority: 0,
        ..m.clone()
    };
    assert_eq!(
        payload.as_slice(),
        encode_message(&unclassed).unwrap().as_slice(),
        "the class is not in the archived message"
    );
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
