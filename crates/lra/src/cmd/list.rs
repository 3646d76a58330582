//! `lra list`: every registered mixer with its summary and config keys (with defaults).

use lra_model::MixerKind;

/// The listing as text.
pub fn render() -> String {
    let mut out = String::new();
    for kind in MixerKind::ALL {
        let caps = kind.default_config().caps();
        let exact = if caps.exact_softmax { "  [exact]" } else { "" };
        out.push_str(&format!("{:<12} {}{exact}\n", kind.name(), kind.summary()));
        let table = kind.default_config().to_table();
        if table.is_empty() {
            out.push_str(&format!("{:<12}   (no settings)\n", ""));
        }
        for (key, value) in &table {
            out.push_str(&format!("{:<12}   mixer.{key} = {value}\n", ""));
        }
    }
    out
}
