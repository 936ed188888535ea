/* cmds.h — the subcommands of the `brisk` program; each lives in app/cmd_<name>.c
 * and returns the process exit status. */
#ifndef CMDS_H
#define CMDS_H
#include <stdio.h>
int cmd_generate(int argc, char **argv);   /* brisk generate --model DIR --prompt TEXT ... */
int cmd_replay(int argc, char **argv);     /* brisk replay parallelprompt FILE.json ...   */
int cmd_serve(int argc, char **argv);      /* brisk serve --model DIR [--port P]          */
int cmd_bench(int argc, char **argv);      /* brisk bench math500 --model DIR ...         */
int cmd_mkmodel(int argc, char **argv);    /* brisk mkmodel --preset NAME --out DIR       */
int cmd_grade(int argc, char **argv);      /* brisk grade --gold G --answer A | --jsonl F */
int cmd_tokenize(int argc, char **argv);   /* brisk tokenize --model M --text TEXT ...    */
/* cmd_tokenize writing to out and err (tests call it this way). */
int cmd_tokenize_to(FILE *out, FILE *err, int argc, char **argv);
#endif
