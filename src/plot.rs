//! Fonts for plotters. Text is laid out with ab_glyph for every backend
//! (SVG sizes its labels, bitmaps draw glyphs), and a clean machine may
//! have no system fonts, so the binary carries DejaVu Sans (its licence is
//! in `docs/fonts/`).

static FONT: &[u8] = include_bytes!("../docs/fonts/DejaVuSans.ttf");

/// Registers the shipped font as `sans-serif` (once per process); call it
/// before drawing any chart.
pub fn register_fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for style in [
            plotters::style::FontStyle::Normal,
            plotters::style::FontStyle::Bold,
        ] {
            // The font is compiled in and known to parse (a test draws with it).
            let _ = plotters::style::register_font("sans-serif", style, FONT);
        }
    });
}
