"""Course assignments from the chapter notebooks: student versions and an autograder.

The chapter notebooks are the instructor source (nbgrader cell metadata; ``### BEGIN SOLUTION``
/ ``### END SOLUTION`` answers; ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` tests). From
one notebook, ``refimpl assignment make 04 --out DIR`` writes the student notebook, the
autograder as plain pytest functions and an otter-grader layout (:mod:`.make`);
``refimpl assignment grade SUBMISSION.ipynb`` runs a submission headless and scores each
question (:mod:`.grade`). The format and its rules: :mod:`.source`; the instructor's guide:
``docs/teaching.md``.

An upper layer like ``compare``: it reads notebooks and runs kernels, imports no chapter package
and is imported by no library code.
"""

from refimpl.assignment.grade import (GradeReport, QuestionResult, format_table, grade_notebook,
                                      structure_problems)
from refimpl.assignment.make import (instructor_notebook, make_assignment, otter_test_source,
                                     pytest_source, student_notebook)
from refimpl.assignment.runtime import call_with_env, execute_notebook
from refimpl.assignment.source import (Assignment, AssignmentError, Question, free_names,
                                       parse_assignment, split_hidden_tests, strip_hidden_tests,
                                       strip_solution, test_function_source)

__all__ = ["Assignment", "AssignmentError", "Question", "parse_assignment", "strip_solution",
           "strip_hidden_tests", "split_hidden_tests", "free_names", "test_function_source",
           "student_notebook", "instructor_notebook", "pytest_source", "otter_test_source",
           "make_assignment", "grade_notebook", "GradeReport", "QuestionResult",
           "structure_problems", "format_table", "execute_notebook", "call_with_env"]
