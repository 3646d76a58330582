//! Plane geometry in pixel units: points, segments and their distances.

use std::ops::{Add, Mul, Sub};

/// A point or vector; `x` grows to the right, `y` downwards (row index), pixel centres at `i + 0.5`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Column coordinate.
    pub x: f32,
    /// Row coordinate.
    pub y: f32,
}

impl Point {
    /// The point `(x, y)`.
    pub fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }

    /// Unit vector at `angle` radians from the x axis.
    pub fn unit(angle: f32) -> Self {
        Self::new(angle.cos(), angle.sin())
    }

    fn dot(self, other: Self) -> f32 {
        self.x * other.x + self.y * other.y
    }

    fn cross(self, other: Self) -> f32 {
        self.x * other.y - self.y * other.x
    }

    /// Euclidean length.
    pub fn norm(self) -> f32 {
        self.dot(self).sqrt()
    }
}

impl Add for Point {
    type Output = Point;
    fn add(self, other: Point) -> Point {
        Point::new(self.x + other.x, self.y + other.y)
    }
}

impl Sub for Point {
    type Output = Point;
    fn sub(self, other: Point) -> Point {
        Point::new(self.x - other.x, self.y - other.y)
    }
}

impl Mul<f32> for Point {
    type Output = Point;
    fn mul(self, factor: f32) -> Point {
        Point::new(self.x * factor, self.y * factor)
    }
}

/// A straight segment from `a` to `b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    /// Start.
    pub a: Point,
    /// End.
    pub b: Point,
}

impl Segment {
    /// Distance from `p` to the nearest point of the segment.
    pub fn distance_to_point(&self, p: Point) -> f32 {
        let along = self.b - self.a;
        let length_sq = along.dot(along);
        let t = if length_sq > 0.0 {
            ((p - self.a).dot(along) / length_sq).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (p - (self.a + along * t)).norm()
    }

    /// Smallest distance between a point of `self` and a point of `other` (0 when they cross).
    pub fn distance(&self, other: &Segment) -> f32 {
        if self.crosses(other) {
            return 0.0;
        }
        self.distance_to_point(other.a)
            .min(self.distance_to_point(other.b))
            .min(other.distance_to_point(self.a))
            .min(other.distance_to_point(self.b))
    }

    /// A lower bound of [`Segment::distance`]: the larger of the gaps between the two bounding
    /// boxes along x and along y (0 when the boxes overlap).
    pub fn box_separation(&self, other: &Segment) -> f32 {
        let gap = |a0: f32, a1: f32, b0: f32, b1: f32| {
            let (a_lo, a_hi) = (a0.min(a1), a0.max(a1));
            let (b_lo, b_hi) = (b0.min(b1), b0.max(b1));
            (a_lo - b_hi).max(b_lo - a_hi).max(0.0)
        };
        let x = gap(self.a.x, self.b.x, other.a.x, other.b.x);
        let y = gap(self.a.y, self.b.y, other.a.y, other.b.y);
        x.max(y)
    }

    /// Whether the segments cross at a point interior to both (touching ends count as distance 0
    /// through the endpoint distances anyway).
    fn crosses(&self, other: &Segment) -> bool {
        let side = |s: &Segment, p: Point| (s.b - s.a).cross(p - s.a);
        let (d1, d2) = (side(self, other.a), side(self, other.b));
        let (d3, d4) = (side(other, self.a), side(other, self.b));
        d1 * d2 < 0.0 && d3 * d4 < 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(ax: f32, ay: f32, bx: f32, by: f32) -> Segment {
        Segment {
            a: Point::new(ax, ay),
            b: Point::new(bx, by),
        }
    }

    #[test]
    fn point_distance_uses_the_nearest_point_of_the_segment() {
        let s = seg(0.0, 0.0, 4.0, 0.0);
        assert_eq!(s.distance_to_point(Point::new(2.0, 3.0)), 3.0);
        assert_eq!(s.distance_to_point(Point::new(7.0, 4.0)), 5.0);
        assert_eq!(s.distance_to_point(Point::new(-3.0, -4.0)), 5.0);
        assert_eq!(
            seg(1.0, 1.0, 1.0, 1.0).distance_to_point(Point::new(4.0, 5.0)),
            5.0
        );
    }

    #[test]
    fn segment_distance_cases() {
        let s = seg(0.0, 0.0, 4.0, 0.0);
        // Crossing, parallel, skew with nearest endpoints, touching end to end.
        assert_eq!(s.distance(&seg(2.0, -1.0, 2.0, 1.0)), 0.0);
        assert_eq!(s.distance(&seg(0.0, 2.0, 4.0, 2.0)), 2.0);
        assert_eq!(s.distance(&seg(7.0, 4.0, 9.0, 9.0)), 5.0);
        assert_eq!(s.distance(&seg(4.0, 0.0, 6.0, 3.0)), 0.0);
        // A T: the other segment's end lies 1 above the middle.
        assert_eq!(s.distance(&seg(2.0, 1.0, 2.0, 5.0)), 1.0);
    }

    #[test]
    fn box_separation_never_exceeds_the_distance() {
        let s = seg(0.0, 0.0, 4.0, 1.0);
        assert_eq!(s.box_separation(&seg(7.0, 5.0, 9.0, 9.0)), 4.0);
        assert_eq!(s.box_separation(&seg(2.0, -1.0, 2.0, 3.0)), 0.0);
        for k in 0..200 {
            let t = k as f32 * 0.37;
            let other = seg(
                6.0 * t.cos(),
                5.0 * t.sin(),
                3.0 + t.sin(),
                7.0 * (t * 1.3).cos(),
            );
            assert!(
                s.box_separation(&other) <= s.distance(&other) + 1e-6,
                "{other:?}"
            );
        }
    }
}
