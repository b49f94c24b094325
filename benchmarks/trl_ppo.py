"""TRL 1.12.0's PPOTrainer on the benchmark's tiny Llama: run by its own venv (benchmarks/_work/trl-venv,
never the project's), called by ``benchmarks/rlhf.py --only ppo`` as a subprocess.

    python3 -m venv benchmarks/_work/trl-venv
    benchmarks/_work/trl-venv/bin/pip install torch==2.13.0 && benchmarks/_work/trl-venv/bin/pip install trl==1.12.0
    benchmarks/_work/trl-venv/bin/python benchmarks/trl_ppo.py SPEC.json OUT.json

SPEC names the policy and reward-model exports rlhf.py wrote (the same weights ours starts from), the
prompts as token ids (the plugin's own rendering, cut to the same length), and the settings: response
length, batch (one mini-batch), PPO epochs, iterations, threads, bf16. The value model is a copy of the
reward model (TRL's usual choice; the same size), the reference a copy of the policy. OUT gets samples
per wall second and per CPU second, and seconds per iteration, over the iterations after the first.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    if spec["bf16"]:
        # PPOTrainer builds its Accelerator without the config's precision: `accelerate launch
        # --mixed_precision bf16` is how its users get bf16 autocast, and this is what that sets
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
    import torch

    torch.set_num_threads(spec["threads"]) if spec["threads"] else None
    import transformers as tf
    from datasets import Dataset
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tf.logging.set_verbosity_error()
    tok = tf.AutoTokenizer.from_pretrained(spec["policy"])
    tok.padding_side = "left"  # TRL's rollout continues every query at the same position
    policy = tf.AutoModelForCausalLM.from_pretrained(spec["policy"], dtype=torch.float32)
    ref = tf.AutoModelForCausalLM.from_pretrained(spec["policy"], dtype=torch.float32)
    reward = tf.AutoModelForSequenceClassification.from_pretrained(spec["reward"], dtype=torch.float32)
    value = tf.AutoModelForSequenceClassification.from_pretrained(spec["reward"], dtype=torch.float32)
    for m in (policy, ref, reward, value):
        m.config.pad_token_id = tok.pad_token_id
    batch, iters = spec["batch"], spec["iterations"]
    ids = spec["prompts"][:batch * iters]
    train = Dataset.from_dict({"input_ids": ids})
    marks: list[tuple[float, float]] = []

    class Marks(tf.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201 (TRL's signature)
            marks.append((time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory() as tmp:
        cfg = PPOConfig(output_dir=tmp, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                        num_mini_batches=1, num_ppo_epochs=spec["epochs"], response_length=spec["response_length"],
                        total_episodes=batch * iters, local_rollout_forward_batch_size=batch, learning_rate=1e-5,
                        temperature=1.0, stop_token="eos", num_sample_generations=0, report_to="none",
                        save_strategy="no", logging_steps=10_000, disable_tqdm=True, use_cpu=True,
                        bf16=spec["bf16"], seed=0, lr_scheduler_type="constant")
        trainer = PPOTrainer(args=cfg, processing_class=tok, model=policy, ref_model=ref, reward_model=reward,
                             train_dataset=train, value_model=value, eval_dataset=train.select(range(batch)),
                             callbacks=[Marks()])
        trainer.train()
        precision = trainer.accelerator.mixed_precision
    n = (len(marks) - 1) * batch  # iteration 1 is the warm-up
    wall, cpu = marks[-1][0] - marks[0][0], marks[-1][1] - marks[0][1]
    import trl

    result = {"samples/s": n / wall, "cpu samples/s": n / cpu, "s/step": wall / (len(marks) - 1),
              "iterations": len(marks), "precision": precision, "threads": torch.get_num_threads(),
              "trl": trl.__version__}
    open(out_path, "w").write(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
