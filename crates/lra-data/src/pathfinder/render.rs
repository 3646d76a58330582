//! Anti-aliased drawing of paddles (thick segments) and marker dots on a gray canvas.

use super::geometry::{Point, Segment};

/// A square image of intensities in `[0, 1]`; shapes combine by maximum, as the official generator
/// combines its layers with `np.maximum`.
pub(crate) struct Canvas {
    side: usize,
    values: Vec<f32>,
}

/// Fraction of a unit pixel covered by a shape of half-width `radius` whose boundary-defining
/// centre (a point or a segment) is `distance` from the pixel centre.
///
/// A box-filter approximation: 1 deep inside, falling linearly over one pixel across the edge; a
/// shape thinner than a pixel (`radius < 0.5`) covers at most its width `2·radius`.
fn coverage(distance: f32, radius: f32) -> f32 {
    (radius + 0.5 - distance).min(2.0 * radius).clamp(0.0, 1.0)
}

impl Canvas {
    /// A black `side × side` canvas.
    pub(crate) fn new(side: usize) -> Self {
        Self {
            side,
            values: vec![0.0; side * side],
        }
    }

    /// Draws the points within `radius` of `distance_from`'s shape, whose bounding box is
    /// `[lo, hi]`, with peak `intensity`.
    fn paint(
        &mut self,
        lo: Point,
        hi: Point,
        radius: f32,
        intensity: f32,
        distance_from: impl Fn(Point) -> f32,
    ) {
        let reach = radius + 1.0;
        let first = |v: f32| ((v - reach).floor().max(0.0)) as usize;
        let last = |v: f32| ((v + reach).ceil().max(0.0) as usize).min(self.side);
        for row in first(lo.y)..last(hi.y) {
            for col in first(lo.x)..last(hi.x) {
                let centre = Point::new(col as f32 + 0.5, row as f32 + 0.5);
                let value = intensity * coverage(distance_from(centre), radius);
                let pixel = &mut self.values[row * self.side + col];
                *pixel = pixel.max(value);
            }
        }
    }

    /// Draws a paddle: the segment `core` thickened to `thickness`, at `intensity`.
    pub(crate) fn stroke(&mut self, core: Segment, thickness: f32, intensity: f32) {
        let lo = Point::new(core.a.x.min(core.b.x), core.a.y.min(core.b.y));
        let hi = Point::new(core.a.x.max(core.b.x), core.a.y.max(core.b.y));
        self.paint(lo, hi, thickness / 2.0, intensity, |p| {
            core.distance_to_point(p)
        });
    }

    /// Draws a filled disk of `radius` around `centre` at `intensity`.
    pub(crate) fn disk(&mut self, centre: Point, radius: f32, intensity: f32) {
        self.paint(centre, centre, radius, intensity, |p| (p - centre).norm());
    }

    /// The canvas as 8-bit gray values, row-major (intensities above 1 saturate).
    pub(crate) fn to_gray(&self) -> Vec<u8> {
        self.values
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(canvas: &Canvas) -> f32 {
        canvas.values.iter().sum()
    }

    #[test]
    fn stroke_covers_the_capsule_area() {
        let mut canvas = Canvas::new(40);
        let core = Segment {
            a: Point::new(5.0, 16.3),
            b: Point::new(25.0, 16.3),
        };
        canvas.stroke(core, 3.0, 1.0);
        // Rectangle 20 × 3 plus two half-disk caps of radius 1.5.
        let area = 20.0 * 3.0 + std::f32::consts::PI * 1.5 * 1.5;
        assert!(
            (total(&canvas) - area).abs() < 0.03 * area,
            "{}",
            total(&canvas)
        );
        // Fully inside, and untouched two pixels beyond the edge.
        assert_eq!(canvas.values[16 * 40 + 15], 1.0);
        assert_eq!(canvas.values[19 * 40 + 15], 0.0);
    }

    #[test]
    fn thin_strokes_cover_their_width_and_intensity_scales() {
        let mut canvas = Canvas::new(16);
        let core = Segment {
            a: Point::new(2.0, 8.5),
            b: Point::new(12.0, 8.5),
        };
        canvas.stroke(core, 0.5, 0.8);
        // A half-pixel-wide line through pixel centres covers half of each pixel.
        assert!((canvas.values[8 * 16 + 6] - 0.4).abs() < 1e-6);
        // Total ink is the capsule area times intensity, within 10 %: the box approximation is
        // coarsest at the round ends of sub-pixel lines.
        let area = 0.5 * 10.0 + std::f32::consts::PI * 0.25 * 0.25;
        let ink = 0.8 * area;
        assert!(
            (total(&canvas) - ink).abs() < 0.1 * ink,
            "{}",
            total(&canvas)
        );
    }

    #[test]
    fn disk_covers_its_area_and_saturates_to_255() {
        let mut canvas = Canvas::new(32);
        canvas.disk(Point::new(16.2, 15.7), 5.0, 1.0);
        let area = std::f32::consts::PI * 25.0;
        assert!(
            (total(&canvas) - area).abs() < 0.02 * area,
            "{}",
            total(&canvas)
        );
        let gray = canvas.to_gray();
        assert_eq!(gray[15 * 32 + 16], 255);
        assert_eq!(gray[0], 0);
    }
}
