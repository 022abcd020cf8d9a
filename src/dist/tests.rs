use super::*;
use candle_core::Device;

#[test]
fn threads_gather_and_sum_in_rank_order() {
    let handles = ThreadGroup::new(3);
    let out: Vec<(Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
        let joins: Vec<_> = handles
            .into_iter()
            .map(|g| {
                s.spawn(move || {
                    let r = g.rank() as f32;
                    let t = Tensor::new(&[r, 10.0 * r], &Device::Cpu).unwrap();
                    let all = g.all_gather(&t).unwrap().to_vec1::<f32>().unwrap();
                    let sum = g.all_reduce_sum(&t).unwrap().to_vec1::<f32>().unwrap();
                    (all, sum)
                })
            })
            .collect();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    });
    for (all, sum) in out {
        assert_eq!(all, vec![0.0, 0.0, 1.0, 10.0, 2.0, 20.0]);
        assert_eq!(sum, vec![3.0, 30.0]);
    }
}

#[test]
fn gather_with_grad_keeps_the_local_rows_live() {
    let g = &ThreadGroup::new(2);
    std::thread::scope(|s| {
        for h in g.clone() {
            s.spawn(move || {
                let v = candle_core::Var::new(&[[h.rank() as f32 + 1.0]], &Device::Cpu).unwrap();
                let all = gather_with_grad(&h, v.as_tensor()).unwrap();
                assert_eq!(all.to_vec2::<f32>().unwrap(), vec![vec![1.0], vec![2.0]]);
                // d(sum of squares)/dv = 2v for the live row only.
                let grads = all.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let gv = grads.get(v.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
                assert_eq!(gv, vec![vec![2.0 * (h.rank() as f32 + 1.0)]]);
            });
        }
    });
}
