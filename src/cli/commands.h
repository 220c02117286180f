/* commands.h: the sigflow subcommands, one file each under src/cli/. Each takes
 * the arguments after its name (argv[0] is the subcommand) and returns the
 * process exit status. */
#ifndef SIGFLOW_CLI_COMMANDS_H
#define SIGFLOW_CLI_COMMANDS_H

int sf_cmd_predict(int argc, char **argv);
int sf_cmd_inspect(int argc, char **argv);
int sf_cmd_broker(int argc, char **argv);
int sf_cmd_run(int argc, char **argv);
int sf_cmd_demo(int argc, char **argv);
int sf_cmd_evaluate(int argc, char **argv);

#endif
