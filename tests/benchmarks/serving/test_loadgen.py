from benchmarks.serving.loadgen import parse_response, retry_delay


def test_a_content_length_response_is_parsed_once_whole_and_leaves_the_next_one_in_the_buffer():
    one = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert parse_response(bytearray(one[:-1])) is None
    status, head, body, used = parse_response(bytearray(one + b"HTTP/1.1 503"))
    assert (status, body, used) == (200, b"ok", len(one))
    assert b"content-length: 2" in head


def test_a_chunked_response_is_joined_and_waits_for_its_last_chunk():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    assert parse_response(bytearray(raw[:-4])) is None
    status, _, body, used = parse_response(bytearray(raw))
    assert (status, body, used) == (200, b"abcde", len(raw))


def test_retry_after_is_honoured_up_to_the_cap_and_ignored_when_absent_or_not_a_number():
    head = b"http/1.1 503 service unavailable\r\nretry-after: 1\r\ncontent-length: 0"
    assert retry_delay(head, 5.0) == 1.0
    assert retry_delay(head, 0.25) == 0.25
    assert retry_delay(b"http/1.1 503 x\r\ncontent-length: 0", 1.0) == 0.0
    assert retry_delay(b"http/1.1 503 x\r\nretry-after: soon", 1.0) == 0.0
