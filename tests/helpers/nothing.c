/* nothing: a shared object that interposes nothing, preloaded by the wrap tests in place of the shim. */
int fdsup_test_nothing(void);
int fdsup_test_nothing(void)
{
    return 0;
}
