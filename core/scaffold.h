/* scaffold: `hookwork init [DIR]`, a ready-to-run cycles directory.
 *
 * Owns: the templates of a new project (a connector, a cycle, its test and
 * an editor configuration).  Uses: nothing but the file system.
 */
#ifndef HW_SCAFFOLD_H
#define HW_SCAFFOLD_H

/* Creates DIR (and missing parents) and writes the template files into it.
 * types_dir is where the editor type definitions live (written into
 * .luarc.json).  Refuses to overwrite an existing file: nothing is written
 * then.  Returns 0 or a negative errno code; errors are printed on stderr
 * naming the file. */
int hw_scaffold_init(const char *dir, const char *types_dir);

#endif
