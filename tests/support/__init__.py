"""What the tests build and run besides the tests themselves: tiny models of other kinds
(tiny_xl, tiny_clipseg, tiny_text_models, sr_models, face_models, annotator_files), pictures and
checkpoints to feed them (train_pictures, labels, ldm_checkpoint), and the processes and servers
tests drive (console_process, serve_process, running_chat, null_worker, postgres_cluster). Fakes
of the platforms' servers are in tests/fakes/."""
