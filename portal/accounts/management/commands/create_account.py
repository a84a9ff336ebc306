"""manage.py create_account USER --role ROLE --site CODE [--site CODE] [--password PW | prompt]."""
import getpass

from django.core.management.base import BaseCommand, CommandError

from portal.accounts.models import Role
from portal.accounts.services import AccountError, create_account, get_or_create_site


class Command(BaseCommand):
    help = "Create a user with a role and site memberships (sites are created with --create-sites)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--site", action="append", default=[], dest="sites")
        parser.add_argument("--password")
        parser.add_argument("--email", default="")
        parser.add_argument("--create-sites", action="store_true")
        parser.add_argument("--update", action="store_true", help="reset password/role/sites of an existing user")

    def handle(self, *args, username, role, sites, password, email, create_sites, update, **options):
        if create_sites:
            for code in sites:
                get_or_create_site(code)
        if not password:
            password = getpass.getpass(f"Password for {username}: ")
        try:
            create_account(username, password, role, sites, email=email, update=update)
        except AccountError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"{username}: {role} at {', '.join(sites) or 'no site'}")
