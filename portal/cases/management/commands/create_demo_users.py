"""manage.py create_demo_users: one account per role with site memberships; prints the logins."""
from django.core.management.base import BaseCommand

from portal.cases.loading import create_demo_users


def print_logins(stdout, logins) -> None:
    stdout.write("Demo logins (username / password / role / sites):")
    for login in logins:
        stdout.write(f"  {login['username']:<18} {login['password']:<28} {login['role']:<12} {', '.join(login['sites'])}")


class Command(BaseCommand):
    help = "Create (or reset) the demo users: admin, coordinators, oncologist, trainee."

    def handle(self, *args, **options):
        print_logins(self.stdout, create_demo_users())
