//! Error context every layer shares: I/O errors said in words, without a bare `os error N`.

/// `std::io::Error`'s own text ends in "(os error 13)"; keep the words, drop the number.
pub fn describe_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_lose_the_bare_os_error_number() {
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(describe_io(&e), "permission denied");
    }
}
