//! Translation, layouts and the job book.

use super::*;
use std::collections::HashSet;

use hashsplit_stratum::{Reject, Submission};

use super::book::BOOK_SIZE;

fn notify() -> Notify {
    Notify {
        job_id: "pool-7".into(),
        prevhash: [3; 32],
        coinb1: vec![1, 2, 3, 4, 5],
        coinb2: vec![9, 9, 9],
        merkle_branch: vec![[4; 32], [5; 32]],
        version: 0x2000_0000,
        nbits: 0x1d00_ffff,
        ntime: 1_700_000_000,
        clean_jobs: true,
    }
}

fn pool_en() -> PoolExtranonce {
    PoolExtranonce {
        extranonce1: vec![0xaa, 0xbb, 0xcc, 0xdd],
        extranonce2_size: 8,
    }
}

const LAYOUT: Layout = Layout {
    extranonce1_size: 2,
    extranonce2_size: 4,
};

fn translated(epoch: u64, ids: &JobIds) -> PoolJob {
    PoolJob::translate(
        PoolId(1),
        &notify(),
        &pool_en(),
        LAYOUT,
        Difficulty::ONE,
        epoch,
        ids,
    )
    .unwrap()
}

#[test]
fn the_miners_coinbase_is_the_pools_coinbase() {
    let ids = JobIds::default();
    let job = translated(0, &ids);
    assert_eq!(job.padding, 2);
    assert_eq!(
        job.notify.coinb1,
        [1, 2, 3, 4, 5, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0]
    );
    let en1 = [0x12, 0x34];
    let en2 = [0xde, 0xad, 0xbe, 0xef];
    let miner_coinbase = job.job.coinbase(&en1, &en2);
    let pool_en2 = job.pool_extranonce2(&en1, &en2);
    assert_eq!(pool_en2.len(), 8);
    let pool_coinbase = [
        &notify().coinb1[..],
        &pool_en().extranonce1,
        &pool_en2,
        &notify().coinb2,
    ]
    .concat();
    assert_eq!(miner_coinbase, pool_coinbase);

    // And so the share hashes the same on the pool's own job.
    let pool_job = Job::from_notify(&notify(), 4 + 8).unwrap();
    let sub = Submission::new(&en2, 1_700_000_000, 42, None);
    let pool_sub = Submission::new(&pool_en2, 1_700_000_000, 42, None);
    let ctx = |en1: &'static [u8]| hashsplit_stratum::ShareContext {
        extranonce1: en1,
        version_mask: None,
        miner_target: Target::MAX,
        pool_target: Target::MAX,
    };
    assert_eq!(
        job.job.hash(&ctx(&[0x12, 0x34]), &sub),
        pool_job.hash(&ctx(&[0xaa, 0xbb, 0xcc, 0xdd]), &pool_sub)
    );
}

#[test]
fn a_pool_extranonce_too_small_is_refused() {
    let small = PoolExtranonce {
        extranonce1: vec![1],
        extranonce2_size: 5,
    };
    let err = PoolJob::translate(
        PoolId(0),
        &notify(),
        &small,
        LAYOUT,
        Difficulty::ONE,
        0,
        &JobIds::default(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        TranslateError::ExtranonceTooSmall {
            pool: 5,
            p: 2,
            d: 4
        }
    ));
}

#[test]
fn a_narrow_pool_narrows_the_layout_of_new_miners_once() {
    let layouts = Layouts::new(LAYOUT);
    assert_eq!(layouts.narrow_to_fit(8).unwrap(), None, "P + D = 6 fits 8");
    assert_eq!(layouts.for_new_miner(), LAYOUT);
    let middle = layouts.narrow_to_fit(5).unwrap().unwrap();
    assert_eq!(middle.extranonce2_size, 3);
    let narrow = layouts.narrow_to_fit(4).unwrap().unwrap();
    assert_eq!(
        narrow,
        Layout {
            extranonce1_size: 2,
            extranonce2_size: 2
        }
    );
    assert_eq!(layouts.for_new_miner(), narrow);
    // Miners given the middle layout keep getting jobs.
    assert_eq!(layouts.all(), vec![LAYOUT, middle, narrow]);
    assert_eq!(layouts.narrow_to_fit(5).unwrap(), None, "already fits");
    assert!(layouts.narrow_to_fit(2).is_err(), "not even one byte fits");

    // A narrow miner's coinbase is the narrow pool's, with no padding.
    let small = PoolExtranonce {
        extranonce1: vec![9; 4],
        extranonce2_size: 4,
    };
    let job = PoolJob::translate(
        PoolId(0),
        &notify(),
        &small,
        narrow,
        Difficulty::ONE,
        0,
        &JobIds::default(),
    )
    .unwrap();
    assert_eq!(job.padding, 0);
    assert_eq!(*job.pool_extranonce2(&[1, 2], &[3, 4]), [1, 2, 3, 4]);
}

#[test]
fn miners_of_different_layouts_never_build_the_same_coinbase() {
    // Every wide miner's extranonce1 starts with a non-zero byte, where
    // a narrower layout has padding: their pool extranonce2s differ.
    let allocator = crate::extranonce::ExtranonceAllocator::new(2);
    let held: Vec<_> = (0..600).map(|_| allocator.allocate().unwrap()).collect();
    let pool = pool_en();
    let ids = JobIds::default();
    let wide = PoolJob::translate(
        PoolId(0),
        &notify(),
        &pool,
        LAYOUT,
        Difficulty::ONE,
        0,
        &ids,
    )
    .unwrap();
    let narrow_layout = Layout {
        extranonce1_size: 2,
        extranonce2_size: 3,
    };
    let narrow = PoolJob::translate(
        PoolId(0),
        &notify(),
        &pool,
        narrow_layout,
        Difficulty::ONE,
        0,
        &ids,
    )
    .unwrap();
    let mut seen = HashSet::new();
    for en1 in &held {
        for en2 in [[0u8; 4], [5, 0, 0, 0], [0, 0, 0, 5], [0xff; 4]] {
            assert!(seen.insert(wide.pool_extranonce2(en1.as_bytes(), &en2)));
        }
        for en2 in [[0u8; 3], [5, 0, 0], [0, 0, 5], [0xff; 3]] {
            assert!(seen.insert(narrow.pool_extranonce2(en1.as_bytes(), &en2)));
        }
    }
}

#[test]
fn proxy_job_ids_are_unique() {
    let ids = JobIds::default();
    let a = translated(0, &ids);
    let b = translated(0, &ids);
    assert_ne!(a.notify.job_id, b.notify.job_id);
    assert_eq!(&*a.pool_job_id, "pool-7");
}

#[test]
fn the_book_finds_jobs_and_refuses_stale_unknown_and_duplicates() {
    let ids = JobIds::default();
    let mut book = JobBook::default();
    let old = Arc::new(translated(3, &ids));
    let new = Arc::new(translated(4, &ids));
    book.sent(Arc::clone(&old), Difficulty::ONE);
    book.sent(Arc::clone(&new), Difficulty::ONE);
    let epoch = |_| 4;
    assert_eq!(
        book.find(&old.notify.job_id, epoch).unwrap_err(),
        Reject::Stale
    );
    assert!(book.find(&new.notify.job_id, epoch).is_ok());
    assert_eq!(book.find("nope", epoch).unwrap_err(), Reject::UnknownJob);

    let key = Submission::new(&[1, 2, 3, 4], 1, 2, None).key(&[0, 1]);
    assert_eq!(book.check_duplicate(&new.notify.job_id, &key), Ok(()));
    book.record(&new.notify.job_id, key);
    assert_eq!(
        book.check_duplicate(&new.notify.job_id, &key),
        Err(Reject::Duplicate)
    );
}

#[test]
fn a_stale_share_meeting_the_network_target_is_recognised() {
    let ids = JobIds::default();
    let mut book = JobBook::default();
    // Regtest's network target: about every other hash is a block.
    let easy = Notify {
        nbits: 0x207f_ffff,
        ..notify()
    };
    let job = PoolJob::translate(
        PoolId(1),
        &easy,
        &pool_en(),
        LAYOUT,
        Difficulty::ONE,
        3,
        &ids,
    )
    .unwrap();
    let hard = translated(3, &ids);
    let (easy_id, hard_id) = (job.notify.job_id.clone(), hard.notify.job_id.clone());
    book.sent(Arc::new(job), Difficulty::ONE);
    book.sent(Arc::new(hard), Difficulty::ONE);
    let share = |nonce| Submission::new(&[1, 2, 3, 4], 1_700_000_000, nonce, None);
    let blocks = (0..64)
        .filter(|&n| {
            book.block_hash(&easy_id, &[0, 1], None, &share(n))
                .is_some()
        })
        .count();
    assert!(
        (8..=56).contains(&blocks),
        "about half are blocks: {blocks}"
    );
    let pool = (0..64).find_map(|n| book.block_hash(&easy_id, &[0, 1], None, &share(n)));
    assert_eq!(pool.map(|(pool, _)| pool), Some(PoolId(1)));
    // At difficulty 1 a block takes ~2^32 hashes: none of these is one.
    assert!((0..64).all(|n| {
        book.block_hash(&hard_id, &[0, 1], None, &share(n))
            .is_none()
    }));
    assert_eq!(book.block_hash("nope", &[0, 1], None, &share(0)), None);
}

#[test]
fn a_job_sent_again_keeps_its_shares_for_duplicate_detection() {
    // The miner goes A → B → A while A's job stays the same.
    let ids = JobIds::default();
    let mut book = JobBook::default();
    let a = Arc::new(translated(0, &ids));
    let b = Arc::new(translated(0, &ids));
    book.sent(Arc::clone(&a), Difficulty::ONE);
    let key = Submission::new(&[9; 4], 1, 2, None).key(&[0, 1]);
    book.record(&a.notify.job_id, key);
    book.sent(Arc::clone(&b), Difficulty::ONE);
    book.sent(Arc::clone(&a), Difficulty::ONE);
    assert_eq!(
        book.check_duplicate(&a.notify.job_id, &key),
        Err(Reject::Duplicate)
    );
}

#[test]
fn the_same_work_under_a_new_job_id_keeps_its_shares() {
    // A new pool difficulty, or the same notify sent twice: the pool's
    // work is offered again under a new miner-facing id.
    let ids = JobIds::default();
    let mut book = JobBook::default();
    let first = Arc::new(translated(0, &ids));
    let again = Arc::new(
        PoolJob::translate(
            PoolId(1),
            &notify(),
            &pool_en(),
            LAYOUT,
            Difficulty::try_new(2.0).unwrap(),
            0,
            &ids,
        )
        .unwrap(),
    );
    assert_ne!(first.notify.job_id, again.notify.job_id);
    book.sent(Arc::clone(&first), Difficulty::ONE);
    book.sent(Arc::clone(&again), Difficulty::ONE);
    let key = Submission::new(&[9; 4], 1, 2, None).key(&[0, 1]);
    book.record(&first.notify.job_id, key);
    assert_eq!(
        book.check_duplicate(&again.notify.job_id, &key),
        Err(Reject::Duplicate)
    );

    // Other work from the same pool (another pool job) is not a duplicate,
    // and the shares stay while any job offering the work is remembered.
    let other = Notify {
        job_id: "pool-8".into(),
        ntime: 1_700_000_001,
        ..notify()
    };
    let other = Arc::new(
        PoolJob::translate(
            PoolId(1),
            &other,
            &pool_en(),
            LAYOUT,
            Difficulty::ONE,
            0,
            &ids,
        )
        .unwrap(),
    );
    assert_ne!(other.work, first.work);
    book.sent(Arc::clone(&other), Difficulty::ONE);
    assert_eq!(book.check_duplicate(&other.notify.job_id, &key), Ok(()));
    for _ in 0..BOOK_SIZE - 2 {
        book.sent(Arc::clone(&other), Difficulty::ONE);
        book.sent(Arc::new(translated(0, &ids)), Difficulty::ONE);
    }
    assert_eq!(
        book.check_duplicate(&again.notify.job_id, &key),
        Err(Reject::Duplicate),
        "the work is still offered under a remembered id"
    );
}

#[test]
fn the_book_forgets_the_oldest_jobs() {
    let ids = JobIds::default();
    let mut book = JobBook::default();
    let first = Arc::new(translated(0, &ids));
    book.sent(Arc::clone(&first), Difficulty::ONE);
    for _ in 0..BOOK_SIZE {
        book.sent(Arc::new(translated(0, &ids)), Difficulty::ONE);
    }
    assert_eq!(
        book.find(&first.notify.job_id, |_| 0).unwrap_err(),
        Reject::UnknownJob
    );
}

#[test]
fn a_lowered_difficulty_applies_to_every_job_a_raise_to_none() {
    let ids = JobIds::default();
    let mut book = JobBook::default();
    let a = Arc::new(translated(0, &ids));
    let b = Arc::new(translated(0, &ids));
    let high = Difficulty::try_new(8.0).unwrap();
    let low = Difficulty::try_new(2.0).unwrap();
    book.sent(Arc::clone(&a), high);
    book.sent(Arc::clone(&b), high);
    book.lower_difficulty(low);
    assert_eq!(book.find(&b.notify.job_id, |_| 0).unwrap().difficulty, low);
    assert_eq!(book.find(&a.notify.job_id, |_| 0).unwrap().difficulty, low);
    book.lower_difficulty(Difficulty::try_new(16.0).unwrap());
    assert_eq!(book.find(&b.notify.job_id, |_| 0).unwrap().difficulty, low);
}

#[test]
fn a_pool_extranonce2_reads_the_same_inline_or_on_the_heap() {
    let short = PoolExtranonce2::new(2, &[1], &[2, 3]);
    assert_eq!(*short, [0, 0, 1, 2, 3]);
    let long = PoolExtranonce2::new(40, &[1, 2], &[3]);
    assert_eq!(long.len(), 43);
    assert!(long[..40].iter().all(|&b| b == 0));
    assert_eq!(long[40..], [1, 2, 3]);
    assert_eq!(short, PoolExtranonce2::new(2, &[1, 2], &[3]));
    assert_ne!(short, PoolExtranonce2::new(1, &[0, 1], &[2, 3, 4]));
}
