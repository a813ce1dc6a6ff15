//! RTCP (RFC 3550 §6) as the RTSP face sends it: a sender report per track every so often,
//! so that standard players map each track's RTP clock to one wall clock (A/V sync), and a
//! goodbye at the end of the stream, which tells them it ended. Packets are built with
//! `rtcp-types`; every one is a compound packet starting with the report and carrying the
//! CNAME, as §6.1 asks.

use std::time::Duration;

use rtcp_types::{
    Bye, Compound, RtcpPacketWriter, RtcpPacketWriterExt, Sdes, SdesChunk, SdesItem, SenderReport,
};

use crate::error::DecodeError;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What a sender report says of one track's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    /// The wall-clock time `rtp_time` corresponds to, as a 64-bit NTP timestamp.
    pub ntp: u64,
    pub rtp_time: u32,
    /// RTP packets and payload octets sent so far (RFC 3550 §6.4.1: they wrap).
    pub packets: u32,
    pub octets: u32,
}

/// `since_unix` (time since 1970) as a 64-bit NTP timestamp (32.32 fixed point since 1900).
pub fn ntp_timestamp(since_unix: Duration) -> u64 {
    let secs = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

fn build(info: &SenderInfo, cname: &str, bye: bool) -> Result<Vec<u8>, DecodeError> {
    let sr = SenderReport::builder(info.ssrc)
        .ntp_timestamp(info.ntp)
        .rtp_timestamp(info.rtp_time)
        .packet_count(info.packets)
        .octet_count(info.octets);
    let sdes = Sdes::builder().add_chunk(
        SdesChunk::builder(info.ssrc).add_item(SdesItem::builder(SdesItem::CNAME, cname)),
    );
    let mut compound = Compound::builder().add_packet(sr).add_packet(sdes);
    if bye {
        compound = compound.add_packet(Bye::builder().add_source(info.ssrc));
    }
    let size = compound
        .calculate_size()
        .map_err(|e| DecodeError::Rtsp(format!("cannot build RTCP: {e}")))?;
    let mut out = vec![0u8; size];
    let n = compound
        .write_into(&mut out)
        .map_err(|e| DecodeError::Rtsp(format!("cannot build RTCP: {e}")))?;
    out.truncate(n);
    Ok(out)
}

/// A sender report with the sender's CNAME (`cname`: at most 255 bytes).
pub fn sender_report(info: &SenderInfo, cname: &str) -> Result<Vec<u8>, DecodeError> {
    build(info, cname, false)
}

/// The last report and a BYE: the track's stream ends.
pub fn goodbye(info: &SenderInfo, cname: &str) -> Result<Vec<u8>, DecodeError> {
    build(info, cname, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtcp_types::Packet;

    const INFO: SenderInfo = SenderInfo {
        ssrc: 0x1234_abcd,
        ntp: 0xe5a1_0000_8000_0000,
        rtp_time: 90_000,
        packets: 7,
        octets: 7000,
    };

    #[test]
    fn ntp_time_of_the_unix_epoch_and_a_half_second() {
        assert_eq!(ntp_timestamp(Duration::ZERO), NTP_UNIX_OFFSET << 32);
        assert_eq!(
            ntp_timestamp(Duration::from_millis(1500)),
            ((NTP_UNIX_OFFSET + 1) << 32) | 0x8000_0000
        );
    }

    // RFC 3550 §6.4.1 and §6.5: SR (PT 200, 6 words after the header) then SDES (PT 202)
    // with one chunk: SSRC, CNAME item (type 1, length 4, "edge"), end, padded to a word.
    #[test]
    fn sender_report_bytes() {
        let b = sender_report(&INFO, "edge").unwrap();
        let expect: Vec<u8> = [
            &[0x80, 200, 0, 6][..],
            &0x1234_abcd_u32.to_be_bytes(),
            &0xe5a1_0000_8000_0000_u64.to_be_bytes(),
            &90_000_u32.to_be_bytes(),
            &7_u32.to_be_bytes(),
            &7000_u32.to_be_bytes(),
            &[0x81, 202, 0, 3],
            &0x1234_abcd_u32.to_be_bytes(),
            &[1, 4, b'e', b'd', b'g', b'e', 0, 0],
        ]
        .concat();
        assert_eq!(b, expect);
    }

    #[test]
    fn goodbye_ends_with_a_bye_for_the_source() {
        let b = goodbye(&INFO, "edge").unwrap();
        let kinds: Vec<u8> = Compound::parse(&b)
            .unwrap()
            .map(|p| match p.unwrap() {
                Packet::Sr(sr) => {
                    assert_eq!(sr.ssrc(), INFO.ssrc);
                    assert_eq!(sr.rtp_timestamp(), INFO.rtp_time);
                    200
                }
                Packet::Sdes(_) => 202,
                Packet::Bye(bye) => {
                    assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![INFO.ssrc]);
                    203
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, vec![200, 202, 203]);
    }
}
