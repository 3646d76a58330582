//! 8-bit grayscale PNG encoding and decoding.

use std::io::Cursor;

use png::{BitDepth, ColorType, Compression, Decoder, Encoder, Transformations};

/// Decodes a PNG into row-major 8-bit gray values, returning `(width, height, pixels)`.
///
/// Gray and gray+alpha images keep their gray channel (alpha dropped); RGB(A) images are turned
/// into gray with the ITU-R 601 weights `tf.image.rgb_to_grayscale` uses; 16-bit samples keep their
/// high byte. Fails with a description for anything that is not a whole, valid PNG.
pub fn decode_gray(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let mut decoder = Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|error| format!("not a valid PNG: {error}"))?;
    let size = reader
        .output_buffer_size()
        .ok_or("PNG too large to decode")?;
    let mut buffer = vec![0; size];
    let frame = reader
        .next_frame(&mut buffer)
        .map_err(|error| format!("corrupt PNG data: {error}"))?;
    buffer.truncate(frame.buffer_size());
    let (width, height) = (frame.width, frame.height);
    let gray = match frame.color_type {
        ColorType::Grayscale => buffer,
        ColorType::GrayscaleAlpha => buffer.chunks_exact(2).map(|px| px[0]).collect(),
        ColorType::Rgb => buffer.chunks_exact(3).map(luma).collect(),
        ColorType::Rgba => buffer.chunks_exact(4).map(luma).collect(),
        ColorType::Indexed => return Err("palette PNG left unexpanded".to_string()),
    };
    Ok((width, height, gray))
}

/// Luma of an RGB(A) pixel with the weights of `tf.image.rgb_to_grayscale`.
fn luma(px: &[u8]) -> u8 {
    let value = 0.2989 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2]);
    value.round().min(255.0) as u8
}

/// Encodes a square `side × side` row-major gray image as an 8-bit grayscale PNG.
///
/// # Panics
/// When `pixels.len() != side²` (a programming error, not user input).
pub fn encode_gray(side: u32, pixels: &[u8]) -> Vec<u8> {
    assert_eq!(
        pixels.len(),
        (side as usize).pow(2),
        "pixel count of a {side}² image"
    );
    let mut bytes = Vec::with_capacity(pixels.len() / 2 + 128);
    let mut encoder = Encoder::new(&mut bytes, side, side);
    encoder.set_color(ColorType::Grayscale);
    encoder.set_depth(BitDepth::Eight);
    // Fast deflate: the generator's time goes mostly into compression at the default level.
    encoder.set_compression(Compression::Fast);
    let mut writer = encoder
        .write_header()
        .expect("writing into a Vec cannot fail");
    writer
        .write_image_data(pixels)
        .expect("the pixel count matches the header");
    writer.finish().expect("writing into a Vec cannot fail");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_is_lossless() {
        let pixels: Vec<u8> = (0..=255)
            .cycle()
            .take(32 * 32)
            .map(|v: u8| v ^ 0x5a)
            .collect();
        let (width, height, decoded) = decode_gray(&encode_gray(32, &pixels)).unwrap();
        assert_eq!((width, height), (32, 32));
        assert_eq!(decoded, pixels);
    }

    #[test]
    fn rgb_becomes_gray_with_tensorflow_weights() {
        let mut bytes = Vec::new();
        let mut encoder = Encoder::new(&mut bytes, 2, 1);
        encoder.set_color(ColorType::Rgb);
        encoder.set_depth(BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[255, 0, 0, 10, 20, 30]).unwrap();
        writer.finish().unwrap();
        let (_, _, gray) = decode_gray(&bytes).unwrap();
        // 0.2989·255 = 76.2; 0.2989·10 + 0.587·20 + 0.114·30 = 18.1.
        assert_eq!(gray, vec![76, 18]);
    }

    #[test]
    fn truncated_and_foreign_bytes_are_errors() {
        let bytes = encode_gray(8, &[7; 64]);
        assert!(decode_gray(&bytes[..bytes.len() / 2]).is_err());
        assert!(decode_gray(b"GIF89a not a png").is_err());
        assert!(decode_gray(&[]).is_err());
    }
}
