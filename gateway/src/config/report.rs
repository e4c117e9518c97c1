//! The problem report every compilation step writes to: errors reject the configuration, warnings do not.
//! Each entry is one line naming the object and the field.

#[derive(Debug, Default)]
pub(super) struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Report {
    pub fn error(&mut self, line: String) {
        self.errors.push(line);
    }

    pub fn warn(&mut self, line: String) {
        self.warnings.push(line);
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }
}
