//! Spreading streams over a fixed number of partitions. All events of one
//! stream land in one partition, so per-partition order is per-stream order.

use uuid::Uuid;

use super::envelope::RecordedEvent;

/// The id an event is partitioned by: its stream's, unless the event names
/// another in its metadata.
pub fn partition_key(event: &RecordedEvent) -> Uuid {
    event
        .metadata
        .get("partition_key")
        .and_then(|k| k.as_str())
        .and_then(|k| Uuid::parse_str(k).ok())
        .unwrap_or(event.stream.stream_id)
}

/// The partition of a stream id: a stable mix of all 128 bits (UUIDv7 ids
/// start with a timestamp, so the high bits alone would cluster).
pub fn partition_of(stream_id: Uuid, partitions: u32) -> u32 {
    let v = stream_id.as_u128();
    let mut h = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
    // splitmix64 finaliser
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_always_maps_to_the_same_partition() {
        let id = Uuid::now_v7();
        assert_eq!(partition_of(id, 8), partition_of(id, 8));
        assert_eq!(partition_of(id, 1), 0);
    }

    #[test]
    fn time_ordered_ids_spread_over_every_partition() {
        let mut counts = [0u32; 8];
        for _ in 0..8000 {
            counts[partition_of(Uuid::now_v7(), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }
}
