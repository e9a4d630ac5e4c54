//! Text for the PNG figures, drawn glyph by glyph at the right place.
//!
//! plotters 0.3.7's `ab_glyph` text drawing places each glyph's bitmap at the pen position
//! without its left side bearing, so glyphs with a large bearing (`,` `.` `:` after `n`, `a`,
//! ...) sit 1-2 px off and words look unevenly spaced. [`GlyphFix`] wraps a backend and draws
//! text itself: same font (DejaVu Sans, embedded), same size, same layout box and anchor as
//! plotters (so axis layout is unchanged), but each glyph's coverage is placed at its pixel
//! bounds, with kerning and sub-pixel pen advance. Everything else goes to the wrapped backend.

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

/// A backend whose text is drawn by [`draw_text`](GlyphFix::draw_text) below. One face,
/// DejaVu Sans regular, the only one registered with plotters, so that plotters' layout boxes
/// (computed with it) match what is drawn.
pub struct GlyphFix<DB> {
    inner: DB,
    font: FontRef<'static>,
}

impl<DB> GlyphFix<DB> {
    /// Wrap `inner`; `None` if the embedded font cannot be parsed (it always can).
    pub fn new(inner: DB) -> Option<GlyphFix<DB>> {
        Some(GlyphFix {
            inner,
            font: FontRef::try_from_slice(dejavu::sans::regular()).ok()?,
        })
    }
}

/// Every glyph pixel of `text` at `size` px: (x, y, coverage), the pen starting at x = 0 and
/// the baseline at y = size / 2 (where plotters puts it, relative to its layout box).
pub fn rasterize(font: &FontRef<'_>, size: f32, text: &str, mut put: impl FnMut(i32, i32, f32)) {
    let scale = PxScale::from(size);
    let scaled = font.as_scaled(scale);
    let mut pen = 0.0f32;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scale, point(pen, size / 2.0));
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline
                .draw(|x, y, cov| put(b.min.x as i32 + x as i32, b.min.y as i32 + y as i32, cov));
        }
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
}

impl<DB: DrawingBackend> DrawingBackend for GlyphFix<DB> {
    type ErrorType = DB::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        self.inner.estimate_text_size(text, style)
    }

    /// plotters' default text drawing (anchor from the layout box, rotation, clipping), with
    /// the glyphs from [`rasterize`].
    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.inner.get_size();
        let mut result = Ok(());
        rasterize(&self.font, style.size() as f32, text, |x, y, cov| {
            let (x, y) = trans.transform(x + dx - min_x, y + dy - min_y);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if result.is_ok() && x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                let c = BackendColor {
                    alpha: color.alpha * f64::from(cov.clamp(0.0, 1.0)),
                    rgb: color.rgb,
                };
                result = self.inner.draw_pixel((x, y), c);
            }
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leftmost and rightmost inked column of `text`.
    fn ink(font: &FontRef<'_>, text: &str) -> (i32, i32) {
        let (mut lo, mut hi) = (i32::MAX, i32::MIN);
        rasterize(font, 40.0, text, |x, _, c| {
            if c > 0.5 {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        });
        (lo, hi)
    }

    #[test]
    fn glyphs_keep_their_side_bearing() {
        let font = FontRef::try_from_slice(dejavu::sans::regular()).expect("font");
        // A period's ink starts well right of the pen (its left side bearing); plotters 0.3.7
        // drew it at the pen.
        let (lo, _) = ink(&font, ".");
        assert!(lo >= 3, "period ink starts at {lo}");
        // "n." : the period's ink starts right of the n's ink, after the n's right bearing and
        // the period's left bearing.
        let (_, n_hi) = ink(&font, "n");
        let (lo2, _) = ink(&font, "n.");
        let (_, hi2) = ink(&font, "n.");
        assert!(hi2 > n_hi + 5, "{hi2} vs {n_hi}");
        assert_eq!(lo2, ink(&font, "n").0);
    }
}
