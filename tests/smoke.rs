mod common;

#[test]
fn set_then_get_over_a_real_socket() {
    let server = common::Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.line(b"set greeting 5 0 5\r\nhello\r\n"), "STORED\r\n");
    assert_eq!(
        c.until_end(b"get greeting\r\n"),
        "VALUE greeting 5 5\r\nhello\r\nEND\r\n"
    );
}
