//! The order export's CSV: cells neutralised against spreadsheet formulas, records written as
//! RFC 4180 (quoted where needed, CRLF line ends).

/// First characters that make spreadsheets evaluate a cell as a formula (OWASP's list).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`, so spreadsheets
/// show it as text instead of running it; any other cell is unchanged.
pub fn neutralise(cell: String) -> String {
    if cell.starts_with(FORMULA_STARTS) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// One RFC 4180 record: fields quoted when they hold a comma, quote, CR or LF (quotes doubled),
/// ended by CRLF.
pub fn record(fields: &[String]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record(fields);
    w.into_inner().unwrap_or_default()
}

/// Records written one after another into one buffer, each cell neutralised as by
/// [`neutralise`] and quoted as by [`record`]: a page of an export costs one buffer, not a
/// writer and a string per cell.
#[derive(Debug, Default)]
pub struct Records(Vec<u8>);

impl Records {
    /// Appends one record, each cell neutralised.
    pub fn push<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) {
        let out = &mut self.0;
        let mut count = 0;
        let mut only_empty = true;
        for cell in cells {
            if count > 0 {
                out.push(b',');
            }
            count += 1;
            only_empty &= cell.is_empty();
            let prefix: &[u8] = if cell.starts_with(FORMULA_STARTS) {
                b"'"
            } else {
                b""
            };
            if cell
                .bytes()
                .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
            {
                out.push(b'"');
                out.extend_from_slice(prefix);
                for b in cell.bytes() {
                    if b == b'"' {
                        out.push(b'"');
                    }
                    out.push(b);
                }
                out.push(b'"');
            } else {
                out.extend_from_slice(prefix);
                out.extend_from_slice(cell.as_bytes());
            }
        }
        // A record of one empty cell would be an empty line, which readers skip.
        if count == 1 && only_empty {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(bytes: &[u8]) -> Vec<String> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes);
        let rec = r.records().next().unwrap().unwrap();
        rec.iter().map(str::to_string).collect()
    }

    #[test]
    fn formula_cells_get_a_leading_quote_and_others_stay() {
        for (cell, want) in [
            ("=1+2", "'=1+2"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("tea", "tea"),
            ("", ""),
            (" =1", " =1"),
            ("1-2", "1-2"),
        ] {
            assert_eq!(neutralise(cell.to_string()), want, "{cell:?}");
        }
    }

    #[test]
    fn records_are_quoted_only_where_needed_and_end_in_crlf() {
        let fields = ["a", "b,c", "say \"hi\"", "two\nlines", ""].map(str::to_string);
        assert_eq!(
            record(&fields),
            b"a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n".to_vec()
        );
        assert_eq!(parse(&record(&fields)), fields);
        assert_eq!(record(&[String::new()]), b"\"\"\r\n".to_vec());
    }

    proptest! {
        #[test]
        fn records_write_what_record_writes_for_neutralised_cells(rows in proptest::collection::vec(proptest::collection::vec("\\PC{0,12}|[=+@\t\r\n\",-]{0,4}", 1..5), 1..4)) {
            let mut many = Records::default();
            let mut one_by_one = Vec::new();
            for row in &rows {
                many.push(row.iter().map(String::as_str));
                let cells: Vec<String> = row.iter().cloned().map(neutralise).collect();
                one_by_one.extend(record(&cells));
            }
            prop_assert_eq!(many.into_bytes(), one_by_one);
        }

        #[test]
        fn a_neutralised_cell_parses_back_as_written(cells in proptest::collection::vec("\\PC{0,20}|[=+@\t\r\n\",-]{0,6}", 1..5)) {
            let cells: Vec<String> = cells.into_iter().map(neutralise).collect();
            prop_assert!(cells.iter().all(|c| !c.starts_with(FORMULA_STARTS)));
            prop_assert_eq!(parse(&record(&cells)), cells);
        }
    }
}
